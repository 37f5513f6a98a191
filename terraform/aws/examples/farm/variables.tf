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
  default     = "skfarm"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 characters, lower-case letters, digits and dashes."
  }
}

variable "node_count" {
  description = "Number of farm nodes (2 to 16)."
  type        = number
  default     = 3

  validation {
    condition     = var.node_count >= 2 && var.node_count <= 16
    error_message = "node_count: 2 to 16."
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

variable "client_cidrs" {
  description = "Who may reach the web service through the load balancer; default: the admins only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs: a list of CIDRs."
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
