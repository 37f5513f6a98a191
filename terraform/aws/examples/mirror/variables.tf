variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "eu-west-3"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region: an AWS region name such as eu-west-3."
  }
}

variable "name" {
  description = "Name of the cluster (prefix of resources and host names)."
  type        = string
  default     = "skmirror"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 characters, lower-case letters, digits and dashes."
  }
}

variable "vip_mode" {
  description = "route: a /32 route to the primary (provider aws_route); lb: a Network Load Balancer probing the health endpoint (provider aws_lb)."
  type        = string
  default     = "route"

  validation {
    condition     = contains(["route", "lb"], var.vip_mode)
    error_message = "vip_mode: route or lb."
  }
}

variable "vip_address" {
  description = "route mode: the VIP, outside the VPC's CIDR (10.40.0.0/16)."
  type        = string
  default     = "10.41.0.10"

  validation {
    condition     = can(cidrhost("${var.vip_address}/32", 0))
    error_message = "vip_address: an IPv4 address."
  }
}

variable "admin_cidrs" {
  description = "Where you run Terraform and Ansible from, e.g. [\"203.0.113.7/32\"]: SSH and the console are open to these only."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && !contains(var.admin_cidrs, "0.0.0.0/0")
    error_message = "admin_cidrs: your address(es), never 0.0.0.0/0."
  }
}

variable "ssh_public_key_file" {
  description = "Path of the OpenSSH public key Ansible logs in with."
  type        = string
  default     = "~/.ssh/id_ed25519.pub"

  validation {
    condition     = endswith(var.ssh_public_key_file, ".pub")
    error_message = "ssh_public_key_file: the .pub file of the key pair."
  }
}

variable "witness_address" {
  description = "Split-brain witness both nodes can ping (e.g. a small third instance); null: none."
  type        = string
  default     = null

  validation {
    condition     = var.witness_address == null || can(cidrhost("${coalesce(var.witness_address, "x")}/32", 0))
    error_message = "witness_address: an IPv4 address, or null."
  }
}
