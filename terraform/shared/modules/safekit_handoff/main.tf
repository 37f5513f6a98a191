# The hand-off to Ansible, the same for every cloud: the inventory's group variables the roles
# read (safekit_cloud, safekit_node, ...), with the cloud's own identifiers added under
# safekit_cloud_*.

locals {
  # The group the playbooks run on (safekit.ha.deploy_*: hosts: safekit_nodes).
  group = "safekit_nodes"

  inventory_vars = merge(
    {
      ansible_user               = var.ssh_user
      ansible_python_interpreter = "/usr/bin/python3"
      safekit_cluster_name       = var.name
      safekit_module_name        = var.module_name
      safekit_module_kind        = var.kind
      safekit_heartbeat_port     = var.heartbeat_port
      safekit_health_port        = var.health_port
      safekit_app_port           = var.app_port
      safekit_vip                = var.vip
      safekit_vip_provider       = var.vip_provider
      safekit_vip_options        = var.vip_options
      safekit_cloud              = var.cloud
    },
    var.cloud_vars,
    var.kind == "mirror" ? { safekit_replication_port = var.replication_port } : {},
    var.witness_address == null ? {} : { safekit_witness = var.witness_address },
  )
}
