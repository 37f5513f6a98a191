# A two-node safekit mirror cluster on Azure: the nodes in two zones of a new virtual network,
# the VIP moved by a /32 route (or a Standard Load Balancer with vip_mode = "lb"), the inventory
# for Ansible. Sign in first (az login) and pick the subscription (ARM_SUBSCRIPTION_ID).
#   terraform init && terraform apply -var 'admin_cidrs=["203.0.113.7/32"]'
# or all of it: safekit cloud up --cloud azure --example mirror

provider "azurerm" {
  features {}
}

module "cluster" {
  source = "../../modules/safekit_cluster"

  name           = var.name
  location       = var.location
  kind           = "mirror"
  node_count     = 2
  module_name    = "webmirror"
  vip_mode       = var.vip_mode
  vip_address    = var.vip_address
  app_port       = 8080
  admin_cidrs    = var.admin_cidrs
  ssh_public_key = file(pathexpand(var.ssh_public_key_file))
  tags           = { project = "safekit", "safekit-example" = "mirror" }

  witness_address = var.witness_address
}
