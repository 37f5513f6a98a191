# The hand-off to Ansible: the inventory the playbooks take, with what the safekit_cloud role
# needs to configure the VIP provider (its name and options) and the cloud's identifiers.

locals {
  inventory_nodes = [
    for i, node in google_compute_instance.node : {
      name         = node.name
      ansible_host = var.assign_public_ip ? node.network_interface[0].access_config[0].nat_ip : node.network_interface[0].network_ip
      private_ip   = node.network_interface[0].network_ip
      vars = {
        safekit_cloud_instance = node.name
        safekit_cloud_zone     = node.zone
      }
    }
  ]

  vip_options = {
    gcp_route = { route_name = local.vip_route_name, network = local.network_name }
    gcp_ilb   = {}
  }

  inventory_vars = merge(
    {
      ansible_user                  = var.ssh_user
      ansible_python_interpreter    = "/usr/bin/python3"
      safekit_cluster_name          = var.name
      safekit_module_name           = var.module_name
      safekit_module_kind           = var.kind
      safekit_heartbeat_port        = local.heartbeat_port
      safekit_health_port           = local.health_port
      safekit_app_port              = var.app_port
      safekit_vip                   = var.vip_mode == "route" ? var.vip_address : one(google_compute_forwarding_rule.app[*].ip_address)
      safekit_vip_provider          = local.vip_provider
      safekit_vip_options           = local.vip_options[local.vip_provider]
      safekit_cloud                 = "gcp"
      safekit_cloud_project         = var.project
      safekit_cloud_region          = var.region
      safekit_cloud_network         = local.network_name
      safekit_cloud_service_account = google_service_account.nodes.email
    },
    var.kind == "mirror" ? { safekit_replication_port = local.replication_port } : {},
    var.witness_address == null ? {} : { safekit_witness = var.witness_address },
  )
}
