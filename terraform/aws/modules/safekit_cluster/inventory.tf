# The hand-off to Ansible: the inventory the playbooks take, with what the safekit_cloud role
# needs to configure the VIP provider (its name and options) and the cloud's identifiers.

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

  inventory_vars = merge(
    {
      ansible_user                   = var.ssh_user
      ansible_python_interpreter     = "/usr/bin/python3"
      safekit_cluster_name           = var.name
      safekit_module_name            = var.module_name
      safekit_module_kind            = var.kind
      safekit_heartbeat_port         = local.heartbeat_port
      safekit_health_port            = local.health_port
      safekit_app_port               = var.app_port
      safekit_vip                    = var.vip_mode == "route" ? var.vip_address : one(aws_lb.this[*].dns_name)
      safekit_vip_provider           = local.vip_provider
      safekit_vip_options            = local.vip_options[local.vip_provider]
      safekit_cloud                  = "aws"
      safekit_cloud_region           = data.aws_region.current.name
      safekit_cloud_vpc_id           = local.vpc_id
      safekit_cloud_route_table_ids  = local.route_table_ids
      safekit_cloud_security_group   = aws_security_group.nodes.id
      safekit_cloud_instance_profile = aws_iam_instance_profile.node.name
    },
    var.kind == "mirror" ? { safekit_replication_port = local.replication_port } : {},
    var.witness_address == null ? {} : { safekit_witness = var.witness_address },
  )
}
