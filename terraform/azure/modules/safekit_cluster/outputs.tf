output "ansible_inventory" {
  description = "The Ansible inventory (YAML) of the cluster: write it to a file and run the playbooks with it (safekit cloud up does)."
  value       = module.handoff.ansible_inventory
}

output "inventory_vars" {
  description = "The group variables of the inventory, as an object (for another inventory format)."
  value       = module.handoff.inventory_vars
}

output "nodes" {
  description = "The nodes: name, address Ansible uses, private IP, VM and NIC names, zone."
  value       = local.inventory_nodes
}

output "vip" {
  description = "What clients connect to: the VIP (route mode) or the load balancer's frontend address (lb mode)."
  value       = local.vip
}

output "resource_group_name" {
  description = "The resource group of the cluster."
  value       = azurerm_resource_group.this.name
}

output "identity_client_id" {
  description = "Client id of the nodes' user-assigned managed identity."
  value       = azurerm_user_assigned_identity.nodes.client_id
}
