# Who may reach the nodes. An NSG lets the whole virtual network in by default (AllowVnetInBound),
# so the heartbeat and replication ports get an explicit allow from the nodes' application
# security group and a deny for every other source, before that default.

resource "azurerm_application_security_group" "nodes" {
  name                = "${var.name}-nodes"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_network_security_group" "nodes" {
  name                = "${var.name}-nodes"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_network_security_rule" "heartbeat" {
  name                                       = "safekit-heartbeat"
  description                                = "safekit heartbeats between the nodes"
  priority                                   = 200
  direction                                  = "Inbound"
  access                                     = "Allow"
  protocol                                   = "Udp"
  source_port_range                          = "*"
  destination_port_range                     = tostring(local.heartbeat_port)
  source_application_security_group_ids      = [azurerm_application_security_group.nodes.id]
  destination_application_security_group_ids = [azurerm_application_security_group.nodes.id]
  resource_group_name                        = azurerm_resource_group.this.name
  network_security_group_name                = azurerm_network_security_group.nodes.name
}

resource "azurerm_network_security_rule" "replication" {
  count                                      = var.kind == "mirror" ? 1 : 0
  name                                       = "safekit-replication"
  description                                = "safekit replication between the nodes"
  priority                                   = 210
  direction                                  = "Inbound"
  access                                     = "Allow"
  protocol                                   = "Tcp"
  source_port_range                          = "*"
  destination_port_range                     = tostring(local.replication_port)
  source_application_security_group_ids      = [azurerm_application_security_group.nodes.id]
  destination_application_security_group_ids = [azurerm_application_security_group.nodes.id]
  resource_group_name                        = azurerm_resource_group.this.name
  network_security_group_name                = azurerm_network_security_group.nodes.name
}

resource "azurerm_network_security_rule" "cluster_deny" {
  name                        = "safekit-cluster-ports-deny"
  description                 = "heartbeat and replication ports: nobody but the nodes"
  priority                    = 220
  direction                   = "Inbound"
  access                      = "Deny"
  protocol                    = "*"
  source_port_range           = "*"
  destination_port_ranges     = [tostring(local.heartbeat_port), tostring(local.replication_port)]
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
  resource_group_name         = azurerm_resource_group.this.name
  network_security_group_name = azurerm_network_security_group.nodes.name
}

resource "azurerm_network_security_rule" "admin" {
  name                        = "safekit-admin"
  description                 = "SSH (Ansible) and the safekit console/API from the admins"
  priority                    = 300
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_ranges     = ["22", tostring(local.console_port)]
  source_address_prefixes     = var.admin_cidrs
  destination_address_prefix  = "*"
  resource_group_name         = azurerm_resource_group.this.name
  network_security_group_name = azurerm_network_security_group.nodes.name
}

# Azure's probes come from 168.63.129.16, which the AzureLoadBalancer service tag names.
resource "azurerm_network_security_rule" "health" {
  count                       = var.vip_mode == "lb" ? 1 : 0
  name                        = "safekit-health"
  description                 = "health probes of the load balancer"
  priority                    = 310
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = tostring(local.health_port)
  source_address_prefix       = "AzureLoadBalancer"
  destination_address_prefix  = "*"
  resource_group_name         = azurerm_resource_group.this.name
  network_security_group_name = azurerm_network_security_group.nodes.name
}

resource "azurerm_network_security_rule" "app" {
  name                        = "safekit-app"
  description                 = "clients of the application (the load balancer keeps their addresses)"
  priority                    = 320
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = tostring(var.app_port)
  source_address_prefixes     = length(var.client_cidrs) > 0 ? var.client_cidrs : null
  source_address_prefix       = length(var.client_cidrs) > 0 ? null : "VirtualNetwork"
  destination_address_prefix  = "*"
  resource_group_name         = azurerm_resource_group.this.name
  network_security_group_name = azurerm_network_security_group.nodes.name
}

# The health port is for the load balancer only (metrics are there too).
resource "azurerm_network_security_rule" "health_deny" {
  name                        = "safekit-health-deny"
  description                 = "the health port: nobody but the load balancer"
  priority                    = 330
  direction                   = "Inbound"
  access                      = "Deny"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = tostring(local.health_port)
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
  resource_group_name         = azurerm_resource_group.this.name
  network_security_group_name = azurerm_network_security_group.nodes.name
}
