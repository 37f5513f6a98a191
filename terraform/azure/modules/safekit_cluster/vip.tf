# route mode (mirror): VIP/32 -> VirtualAppliance = the primary's private IP, in a route table
# attached to the nodes' subnet (or in yours). The azure_route provider of the node that becomes
# primary rewrites the next hop at failover, so Terraform must not put it back.

resource "azurerm_route_table" "vip" {
  count               = var.vip_mode == "route" && var.route_table_id == null ? 1 : 0
  name                = "${var.name}-vip"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_subnet_route_table_association" "nodes" {
  count          = var.vip_mode == "route" && var.route_table_id == null && var.create_network ? 1 : 0
  subnet_id      = local.subnet_id
  route_table_id = azurerm_route_table.vip[0].id
}

resource "azurerm_route" "vip" {
  count                  = var.vip_mode == "route" ? 1 : 0
  name                   = local.vip_route_name
  resource_group_name    = local.route_table_group
  route_table_name       = local.route_table_name
  address_prefix         = "${var.vip_address}/32"
  next_hop_type          = "VirtualAppliance"
  next_hop_in_ip_address = azurerm_network_interface.node[0].private_ip_address

  lifecycle {
    ignore_changes = [next_hop_in_ip_address]
  }

  depends_on = [azurerm_route_table.vip]
}
