output "ansible_inventory" {
  description = "The Ansible inventory (YAML) of the cluster, for safekit.ha.deploy_mirror / safekit.ha.deploy_farm (playbooks/deploy-*.yml in a checkout)."
  value = templatefile("${path.module}/templates/inventory.yml.tftpl", {
    cloud   = var.cloud
    cluster = var.name
    kind    = var.kind
    group   = local.group
    nodes   = var.nodes
    vars    = local.inventory_vars
  })
}

output "inventory_vars" {
  description = "The group variables of the inventory, as an object (for another inventory format)."
  value       = local.inventory_vars
}

output "cloud_init" {
  description = "One cloud-init document (#cloud-config) per entry of hostnames, in order: the admin user with the key, sshd without passwords, Python 3 with venv (AWS user_data, Azure custom_data)."
  value = [
    for hostname in var.hostnames : templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      hostname       = hostname
      ssh_user       = var.ssh_user
      ssh_public_key = trimspace(var.ssh_public_key)
    })
  ]
}

output "startup_script" {
  description = "The boot script of an image without cloud-init (GCP's startup-script metadata): Python 3 with venv, and the same sshd settings as cloud_init; the guest agent creates the admin user."
  value       = templatefile("${path.module}/templates/startup.sh.tftpl", {})
}
