output "ansible_inventory" {
  description = "The Ansible inventory (YAML) of the cluster: write it to a file and run the playbooks with it (safekit cloud up does)."
  value       = module.handoff.ansible_inventory
}

output "inventory_vars" {
  description = "The group variables of the inventory, as an object (for another inventory format)."
  value       = module.handoff.inventory_vars
}

output "nodes" {
  description = "The nodes: name, address Ansible uses, private IP, instance name, zone."
  value       = local.inventory_nodes
}

output "vip" {
  description = "What clients connect to: the VIP (route mode) or the forwarding rule's address (lb mode)."
  value       = local.vip
}

output "network" {
  description = "The VPC network of the cluster (created or yours)."
  value       = local.network_name
}

output "service_account_email" {
  description = "The nodes' service account."
  value       = google_service_account.nodes.email
}
