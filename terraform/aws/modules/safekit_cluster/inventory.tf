# The hand-off to Ansible: the inventory the playbooks take, with what the safekit_cloud role
# needs to configure the VIP provider (its name and options) and the cloud's identifiers. The
# inventory, its common variables and the nodes' first-boot script are rendered by the shared,
# provider-free module (terraform/shared/modules/safekit_handoff, docs/adr/0040).

locals {
  inventory_nodes = [
    for i, node in aws_instance.node : {
      name         = "${var.name}-node${i + 1}"
      ansible_host = var.assign_public_ip ? node.public_ip : node.private_ip
      private_ip   = node.private_ip
      vars = {
        safekit_cloud_instance_id = node.id
        safekit_cloud_eni_id      = node.primary_network_interface_id
        safekit_cloud_zone        = node.availability_zone
      }
    }
  ]

  vip_options = {
    aws_route = { route_tables = join(",", local.route_table_ids) }
    aws_lb    = {}
  }

  vip = var.vip_mode == "route" ? var.vip_address : one(aws_lb.this[*].dns_name)
}

module "handoff" {
  source = "../../../shared/modules/safekit_handoff"

  cloud            = "aws"
  name             = var.name
  kind             = var.kind
  module_name      = var.module_name
  ssh_user         = var.ssh_user
  ssh_public_key   = var.ssh_public_key
  hostnames        = [for i in range(var.node_count) : "${var.name}-node${i + 1}"]
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
    safekit_cloud_region           = data.aws_region.current.name
    safekit_cloud_vpc_id           = local.vpc_id
    safekit_cloud_route_table_ids  = local.route_table_ids
    safekit_cloud_security_group   = aws_security_group.nodes.id
    safekit_cloud_instance_profile = aws_iam_instance_profile.node.name
  }
}
