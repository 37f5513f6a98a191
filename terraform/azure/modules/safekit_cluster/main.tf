# Resource group, network (created, or yours), and the names shared by the other files.

locals {
  # The engine's constants (safekit.daemon.health.DEFAULT_PORT and its ready path; the heartbeat
  # port of <heart>/<farm>; replication = heartbeat + 1): tests/unit/terraform checks them.
  health_port      = 9010
  health_path      = "/var/modules/${var.module_name}/ready.txt"
  console_port     = 9453
  heartbeat_port   = var.heartbeat_port
  replication_port = var.heartbeat_port + 1

  vip_provider = var.vip_mode == "route" ? "azure_route" : "azure_lb"
  tags         = merge({ "safekit-cluster" = var.name }, var.tags)
  node_names   = [for i in range(var.node_count) : "${var.name}-node${i + 1}"]

  subnet_id   = var.create_network ? one(azurerm_subnet.nodes[*].id) : var.subnet_id
  subnet_cidr = var.create_network ? cidrsubnet(var.vnet_cidr, 24 - tonumber(split("/", var.vnet_cidr)[1]), 0) : null
  # The route table that carries the VIP route (route mode): created, or yours.
  route_table_id    = var.route_table_id != null ? var.route_table_id : one(azurerm_route_table.vip[*].id)
  route_table_name  = var.route_table_id != null ? split("/", var.route_table_id)[8] : "${var.name}-vip"
  route_table_group = var.route_table_id != null ? split("/", var.route_table_id)[4] : azurerm_resource_group.this.name
  # The name the azure_route provider uses by default: safekit-<VIP with dashes>.
  vip_route_name = var.vip_address == null ? null : "safekit-${replace(var.vip_address, ".", "-")}"
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "this" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "this" {
  count               = var.create_network ? 1 : 0
  name                = "${var.name}-vnet"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "nodes" {
  count                = var.create_network ? 1 : 0
  name                 = "nodes"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this[0].name
  address_prefixes     = [local.subnet_cidr]
  #checkov:skip=CKV2_AZURE_31:the network security group is attached to each node's NIC (azurerm_network_interface_security_group_association), which also covers a subnet you bring.
}
