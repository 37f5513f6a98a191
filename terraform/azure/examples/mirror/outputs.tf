output "ansible_inventory" {
  description = "Ansible inventory of the cluster (YAML): terraform output -raw ansible_inventory > inventory.yml."
  value       = module.cluster.ansible_inventory
}

output "inventory_vars" {
  description = "The inventory's group variables, as an object."
  value       = module.cluster.inventory_vars
}

output "nodes" {
  description = "The nodes (name, addresses, VM and NIC names, zone)."
  value       = module.cluster.nodes
}

output "vip" {
  description = "What clients connect to."
  value       = module.cluster.vip
}
