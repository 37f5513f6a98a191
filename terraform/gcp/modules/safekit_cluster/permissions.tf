# The Compute permissions each safekit VIP provider of GCP needs, copied from the single source of
# truth, src/safekit/vip/cloud/permissions.py. tests/unit/terraform checks that this map equals
# permissions.py for every provider and that nothing else in terraform/gcp grants a permission.
locals {
  vip_actions = {
    gcp_route = [
      "compute.globalOperations.get",
      "compute.instances.use",
      "compute.networks.updatePolicy",
      "compute.routes.create",
      "compute.routes.delete",
      "compute.routes.get",
    ]
    gcp_alias_ip = [
      "compute.instances.get",
      "compute.instances.list",
      "compute.instances.updateNetworkInterface",
      "compute.zoneOperations.get",
    ]
    gcp_ilb = []
  }
}
