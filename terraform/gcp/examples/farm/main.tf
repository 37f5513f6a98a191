# A safekit farm on GCP: NODE_COUNT active nodes behind an external passthrough Network Load
# Balancer whose health check asks each node's /var/modules/webfarm/ready.txt on port 9010.
#   terraform init && terraform apply -var project=my-project -var 'admin_cidrs=["203.0.113.7/32"]'
# or: safekit cloud up --cloud gcp --example farm -v project=my-project

provider "google" {
  project = var.project
  region  = var.region
}

module "cluster" {
  source = "../../modules/safekit_cluster"

  name           = var.name
  project        = var.project
  region         = var.region
  kind           = "farm"
  node_count     = var.node_count
  module_name    = "webfarm"
  vip_mode       = "lb"
  lb_internal    = false
  app_port       = 80
  admin_cidrs    = var.admin_cidrs
  client_cidrs   = length(var.client_cidrs) > 0 ? var.client_cidrs : var.admin_cidrs
  ssh_public_key = file(pathexpand(var.ssh_public_key_file))
  labels         = { project = "safekit", safekit-example = "farm" }
}
