# The hand-off to Ansible: the inventory the playbooks take, with what the safekit_cloud role
# needs to configure the VIP provider (its name and options) and the cloud's identifiers.

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

  inventory_vars = merge(
    {
      ansible_user                     = var.ssh_user
      ansible_python_interpreter       = "/usr/bin/python3"
      safekit_cluster_name             = var.name
      safekit_module_name              = var.module_name
      safekit_module_kind              = var.kind
      safekit_heartbeat_port           = local.heartbeat_port
      safekit_health_port              = local.health_port
      safekit_app_port                 = var.app_port
      safekit_vip                      = var.vip_mode == "route" ? var.vip_address : try(coalesce(one(azurerm_lb.this[*].frontend_ip_configuration[0].private_ip_address), one(azurerm_public_ip.lb[*].ip_address)), "")
      safekit_vip_provider             = local.vip_provider
      safekit_vip_options              = local.vip_options[local.vip_provider]
      safekit_cloud                    = "azure"
      safekit_cloud_subscription_id    = data.azurerm_client_config.current.subscription_id
      safekit_cloud_resource_group     = azurerm_resource_group.this.name
      safekit_cloud_location           = var.location
      safekit_cloud_identity_client_id = azurerm_user_assigned_identity.nodes.client_id
    },
    var.kind == "mirror" ? { safekit_replication_port = local.replication_port } : {},
    var.witness_address == null ? {} : { safekit_witness = var.witness_address },
  )
}
