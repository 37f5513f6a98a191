# What the stacks (terraform/*/modules/safekit_cluster) pass. A variable named like one of theirs
# has the same type and validation (tests/unit/terraform/test_terraform_shared_variables.py).

variable "cloud" {
  description = "The cloud of the stack: aws, azure or gcp (the inventory's safekit_cloud, which the safekit_cloud role reads)."
  type        = string

  validation {
    condition     = contains(["aws", "azure", "gcp"], var.cloud)
    error_message = "cloud: aws, azure or gcp."
  }
}

variable "name" {
  description = "Name of the cluster (the inventory's safekit_cluster_name)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "kind" {
  description = "Kind of safekit module the cluster runs: mirror or farm (the playbook to run, and whether a replication port is written)."
  type        = string

  validation {
    condition     = contains(["mirror", "farm"], var.kind)
    error_message = "kind: mirror or farm."
  }
}

variable "module_name" {
  description = "Name of the safekit module (the inventory's safekit_module_name)."
  type        = string

  validation {
    # The engine's own rule for module names in the health path (safekit.daemon.health).
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", var.module_name))
    error_message = "module_name: 1-64 characters, letters, digits, '_', '.', '-', starting with a letter or digit."
  }
}

variable "ssh_user" {
  description = "Admin user Ansible logs in as (ansible_user), whom cloud_init creates with ssh_public_key and passwordless sudo."
  type        = string

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user)) && var.ssh_user != "root"
    error_message = "ssh_user: a Linux user name, not root."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key (one line) of the admin user; surrounding white space, such as a .pub file's newline, is trimmed."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key: an OpenSSH public key line (ssh-ed25519 AAAA..., ssh-rsa AAAA..., ecdsa-sha2-...)."
  }
}

variable "hostnames" {
  description = "Host names of the nodes, in the order of the stack's instances: output cloud_init has one document for each."
  type        = list(string)

  validation {
    condition     = alltrue([for h in var.hostnames : can(regex("^[a-z][a-z0-9-]{0,62}$", h))]) && length(distinct(var.hostnames)) == length(var.hostnames)
    error_message = "hostnames: distinct host names, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "nodes" {
  description = "The nodes as the stack created them: name, the address Ansible uses (ansible_host), private IP (safekit_addresses.default), and the node's own safekit_cloud_* variables."
  type = list(object({
    name         = string
    ansible_host = string
    private_ip   = string
    vars         = map(string)
  }))

  validation {
    condition     = length(distinct([for n in var.nodes : n.name])) == length(var.nodes) && alltrue(flatten([for n in var.nodes : [for k in keys(n.vars) : startswith(k, "safekit_cloud_")]]))
    error_message = "nodes: distinct names, and every per-node variable named safekit_cloud_*."
  }
}

variable "heartbeat_port" {
  description = "UDP port of the module's heartbeats (<heart port> / <farm port>; the engine's default is 4800). A mirror's replication uses TCP heartbeat_port + 1."
  type        = number

  validation {
    condition     = var.heartbeat_port >= 1024 && var.heartbeat_port <= 65534
    error_message = "heartbeat_port: 1024-65534 (the replication port, heartbeat_port + 1, must be a port too)."
  }
}

variable "replication_port" {
  description = "TCP port of a mirror's replication, written to the inventory for a mirror only: the engine's heartbeat_port + 1."
  type        = number

  validation {
    condition     = var.replication_port == var.heartbeat_port + 1
    error_message = "replication_port: heartbeat_port + 1, as the engine derives it."
  }
}

variable "health_port" {
  description = "Port of the engine's health endpoint (/var/modules/<module_name>/ready.txt) that the load balancers probe."
  type        = number

  validation {
    condition     = var.health_port >= 1 && var.health_port <= 65535
    error_message = "health_port: 1-65535."
  }
}

variable "app_port" {
  description = "TCP port of the application that the load balancer forwards (lb mode)."
  type        = number

  validation {
    condition     = var.app_port >= 1 && var.app_port <= 65535 && !contains([22, 9010, 9453], var.app_port)
    error_message = "app_port: 1-65535, and not 22, 9010 or 9453 (ssh, health, console)."
  }
}

variable "vip" {
  description = "What clients connect to (safekit_vip): the VIP in route mode, or the load balancer's address or DNS name, which the cloud gives at apply."
  type        = string
}

variable "vip_provider" {
  description = "The VIP provider the nodes use (safekit_vip_provider), one of the cloud's in src/safekit/vip/cloud/permissions.py."
  type        = string

  validation {
    condition     = startswith(var.vip_provider, "${var.cloud}_")
    error_message = "vip_provider: one of the cloud's providers, named <cloud>_<kind> (aws_route, azure_lb, gcp_ilb, ...)."
  }
}

variable "vip_options" {
  description = "The VIP provider's options (safekit_vip_options), e.g. the route tables of aws_route; {} when it needs none."
  type        = map(string)
}

variable "witness_address" {
  description = "Split-brain witness both nodes ping (a mirror's <splitbrain>); null: none is written to the inventory (set safekit_witness there)."
  type        = string
  default     = null

  validation {
    condition     = var.witness_address == null || can(cidrhost("${coalesce(var.witness_address, "x")}/32", 0))
    error_message = "witness_address: an IPv4 address, or null."
  }
}

variable "cloud_vars" {
  description = "The cloud's own group variables, every name starting with safekit_cloud_ (region, network, identity, ...), added to the common ones."
  type        = any

  validation {
    condition     = alltrue([for k in keys(var.cloud_vars) : startswith(k, "safekit_cloud_")])
    error_message = "cloud_vars: every name starts with safekit_cloud_ (the common variables are this module's)."
  }
}
