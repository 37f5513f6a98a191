# The Azure actions each safekit VIP provider calls, copied from the single source of truth,
# src/safekit/vip/cloud/permissions.py. tests/unit/terraform checks that this map equals
# permissions.py for every provider and that nothing else in terraform/azure grants an action.
locals {
  vip_actions = {
    azure_route = [
      "Microsoft.Network/locations/operations/read",
      "Microsoft.Network/routeTables/routes/read",
      "Microsoft.Network/routeTables/routes/write",
    ]
    azure_nic_ip = [
      "Microsoft.Network/locations/operations/read",
      "Microsoft.Network/networkInterfaces/read",
      "Microsoft.Network/networkInterfaces/write",
      "Microsoft.Network/virtualNetworks/subnets/join/action",
    ]
    azure_lb = []
  }
}
