# The hand-off to Ansible: the inventory the playbooks take, with what the safekit_cloud role
# needs to configure the VIP provider (its name and options) and the cloud's identifiers. The
# inventory, its common variables and the nodes' first-boot script are rendered by the shared,
# provider-free module (terraform/shared/modules/safekit_handoff, docs/adr/0040).

locals {
  inventory_nodes = [
    for i, vm in azurerm_linux_virtual_machine.node : {
      name         = vm.name
      ansible_host = var.assign_public_ip ? azurerm_public_ip.node[i].ip_address : vm.private_ip_address
      private_ip   = vm.private_ip_address
      vars = {
        safekit_cloud_vm_name = vm.name
        safekit_cloud_nic     = azurerm_network_interface.node[i].name
        safekit_cloud_zone    = vm.zone == null ? "" : vm.zone
      }
    }
  ]

  vip_options = {
    azure_route = {
      route_table        = local.route_table_name
      route_name         = coalesce(local.vip_route_name, "none")
      resource_group     = local.route_table_group
      identity_client_id = azurerm_user_assigned_identity.nodes.client_id
    }
    azure_lb = {}
  }

  vip = var.vip_mode == "route" ? var.vip_address : try(coalesce(one(azurerm_lb.this[*].frontend_ip_configuration[0].private_ip_address), one(azurerm_public_ip.lb[*].ip_address)), "")
}

module "handoff" {
  source = "../../../shared/modules/safekit_handoff"

  cloud            = "azure"
  name             = var.name
  kind             = var.kind
  module_name      = var.module_name
  ssh_user         = var.ssh_user
  ssh_public_key   = var.ssh_public_key
  hostnames        = local.node_names
  nodes            = local.inventory_nodes
  heartbeat_port   = local.heartbeat_port
  replication_port = local.replication_port
  health_port      = local.health_port
  app_port         = var.app_port
  vip              = local.vip
  vip_provider     = local.vip_provider
  vip_options      = local.vip_options[local.vip_provider]
  witness_address  = var.witness_address
  cloud_vars = {
    safekit_cloud_subscription_id    = data.azurerm_client_config.current.subscription_id
    safekit_cloud_resource_group     = azurerm_resource_group.this.name
    safekit_cloud_location           = var.location
    safekit_cloud_identity_client_id = azurerm_user_assigned_identity.nodes.client_id
  }
}
