# A two-node safekit mirror cluster on GCP: the nodes in two zones of a new VPC network, the VIP
# moved by a /32 route (or an internal passthrough load balancer with vip_mode = "lb"), the
# inventory for Ansible. Credentials: gcloud auth application-default login.
#   terraform init && terraform apply -var project=my-project -var 'admin_cidrs=["203.0.113.7/32"]'
# or all of it: safekit cloud up --cloud gcp --example mirror -v project=my-project

provider "google" {
  project = var.project
  region  = var.region
}

module "cluster" {
  source = "../../modules/safekit_cluster"

  name           = var.name
  project        = var.project
  region         = var.region
  kind           = "mirror"
  node_count     = 2
  module_name    = "webmirror"
  vip_mode       = var.vip_mode
  vip_address    = var.vip_address
  app_port       = 8080
  admin_cidrs    = var.admin_cidrs
  ssh_public_key = file(pathexpand(var.ssh_public_key_file))
  labels         = { project = "safekit", safekit-example = "mirror" }

  witness_address = var.witness_address
}
