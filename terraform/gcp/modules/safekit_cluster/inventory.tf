# The hand-off to Ansible: the inventory the playbooks take, with what the safekit_cloud role
# needs to configure the VIP provider (its name and options) and the cloud's identifiers. The
# inventory, its common variables and the nodes' first-boot script are rendered by the shared,
# provider-free module (terraform/shared/modules/safekit_handoff, docs/adr/0040).

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

  vip = var.vip_mode == "route" ? var.vip_address : one(google_compute_forwarding_rule.app[*].ip_address)
}

module "handoff" {
  source = "../../../shared/modules/safekit_handoff"

  cloud            = "gcp"
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
    safekit_cloud_project         = var.project
    safekit_cloud_region          = var.region
    safekit_cloud_network         = local.network_name
    safekit_cloud_service_account = google_service_account.nodes.email
  }
}
