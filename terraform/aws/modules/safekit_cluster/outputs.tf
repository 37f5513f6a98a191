output "ansible_inventory" {
  description = "The Ansible inventory (YAML) of the cluster: write it to a file and run the playbooks with it (safekit cloud up does)."
  value       = module.handoff.ansible_inventory
}

output "inventory_vars" {
  description = "The group variables of the inventory, as an object (for another inventory format)."
  value       = module.handoff.inventory_vars
}

output "nodes" {
  description = "The nodes: name, address Ansible uses, private IP, instance and ENI ids, zone."
  value       = local.inventory_nodes
}

output "vip" {
  description = "What clients connect to: the VIP (route mode) or the load balancer's DNS name (lb mode)."
  value       = local.vip
}

output "vpc_id" {
  description = "The VPC of the cluster (created or yours)."
  value       = local.vpc_id
}

output "route_table_ids" {
  description = "Route tables that carry the VIP route (route mode)."
  value       = local.route_table_ids
}

output "node_role_name" {
  description = "The IAM role of the nodes (instance profile)."
  value       = aws_iam_role.node.name
}
