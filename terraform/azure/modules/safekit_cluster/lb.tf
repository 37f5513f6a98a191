# lb mode: a Standard Load Balancer in front of every node; its probe asks each node's health
# endpoint, which answers 200 only on the primary (mirror) or on ready nodes (farm).

resource "azurerm_public_ip" "lb" {
  count               = var.vip_mode == "lb" && !var.lb_internal ? 1 : 0
  name                = "${var.name}-lb-ip"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = length(var.zones) > 0 ? var.zones : null
  tags                = local.tags
}

resource "azurerm_lb" "this" {
  count               = var.vip_mode == "lb" ? 1 : 0
  name                = "${var.name}-lb"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "Standard"
  tags                = local.tags

  frontend_ip_configuration {
    name                          = "vip"
    subnet_id                     = var.lb_internal ? local.subnet_id : null
    private_ip_address_allocation = var.lb_internal ? "Dynamic" : null
    public_ip_address_id          = var.lb_internal ? null : azurerm_public_ip.lb[0].id
    zones                         = var.lb_internal && length(var.zones) > 0 ? var.zones : null
  }
}

resource "azurerm_lb_backend_address_pool" "nodes" {
  count           = var.vip_mode == "lb" ? 1 : 0
  name            = "nodes"
  loadbalancer_id = azurerm_lb.this[0].id
}

resource "azurerm_network_interface_backend_address_pool_association" "node" {
  count                   = var.vip_mode == "lb" ? var.node_count : 0
  network_interface_id    = azurerm_network_interface.node[count.index].id
  ip_configuration_name   = "primary"
  backend_address_pool_id = azurerm_lb_backend_address_pool.nodes[0].id
}

resource "azurerm_lb_probe" "ready" {
  count               = var.vip_mode == "lb" ? 1 : 0
  name                = "safekit-ready"
  loadbalancer_id     = azurerm_lb.this[0].id
  protocol            = "Http"
  port                = local.health_port
  request_path        = local.health_path
  interval_in_seconds = 5
  probe_threshold     = 2
}

resource "azurerm_lb_rule" "app" {
  count                          = var.vip_mode == "lb" ? 1 : 0
  name                           = "app"
  loadbalancer_id                = azurerm_lb.this[0].id
  protocol                       = "Tcp"
  frontend_port                  = var.app_port
  backend_port                   = var.app_port
  frontend_ip_configuration_name = "vip"
  backend_address_pool_ids       = [azurerm_lb_backend_address_pool.nodes[0].id]
  probe_id                       = azurerm_lb_probe.ready[0].id
  disable_outbound_snat          = true
  idle_timeout_in_minutes        = 4
}
