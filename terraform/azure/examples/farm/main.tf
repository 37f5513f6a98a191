# A safekit farm on Azure: NODE_COUNT active nodes behind a public Standard Load Balancer whose
# probe asks each node's /var/modules/webfarm/ready.txt on port 9010.
#   terraform init && terraform apply -var 'admin_cidrs=["203.0.113.7/32"]'
# or: safekit cloud up --cloud azure --example farm

provider "azurerm" {
  features {}
}

module "cluster" {
  source = "../../modules/safekit_cluster"

  name           = var.name
  location       = var.location
  kind           = "farm"
  node_count     = var.node_count
  module_name    = "webfarm"
  vip_mode       = "lb"
  lb_internal    = false
  app_port       = 80
  admin_cidrs    = var.admin_cidrs
  client_cidrs   = length(var.client_cidrs) > 0 ? var.client_cidrs : var.admin_cidrs
  ssh_public_key = file(pathexpand(var.ssh_public_key_file))
  tags           = { project = "safekit", "safekit-example" = "farm" }
}
