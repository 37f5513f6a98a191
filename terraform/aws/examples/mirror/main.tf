# A two-node safekit mirror cluster on AWS: the nodes in two zones of a new VPC, the VIP moved
# by a /32 route (or a Network Load Balancer with vip_mode = "lb"), the inventory for Ansible.
#   terraform init && terraform apply -var 'admin_cidrs=["203.0.113.7/32"]'
#   terraform output -raw ansible_inventory > inventory.yml
#   ansible-playbook -i inventory.yml ../../../../playbooks/deploy-mirror.yml
#   (with the collection installed: ansible-playbook -i inventory.yml safekit.ha.deploy_mirror)
# or all of it: safekit cloud up --cloud aws --example mirror

provider "aws" {
  region = var.region

  default_tags {
    tags = { project = "safekit", "safekit:example" = "mirror" }
  }
}

module "cluster" {
  source = "../../modules/safekit_cluster"

  name           = var.name
  kind           = "mirror"
  node_count     = 2
  module_name    = "webmirror"
  vip_mode       = var.vip_mode
  vip_address    = var.vip_address
  app_port       = 8080
  admin_cidrs    = var.admin_cidrs
  ssh_public_key = file(pathexpand(var.ssh_public_key_file))

  witness_address = var.witness_address
}
