variable "name" {
  description = "Name of the cluster: prefix of every resource, and of the nodes' host names (NAME-node1, ...)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "kind" {
  description = "Kind of safekit module the cluster runs: mirror (two nodes, primary/secondary) or farm (all nodes active)."
  type        = string

  validation {
    condition     = contains(["mirror", "farm"], var.kind)
    error_message = "kind: mirror or farm."
  }
}

variable "node_count" {
  description = "Number of nodes: exactly 2 for a mirror, 2 to 16 for a farm."
  type        = number
  default     = 2

  validation {
    condition     = var.kind == "mirror" ? var.node_count == 2 : (var.node_count >= 2 && var.node_count <= 16)
    error_message = "node_count: a mirror has exactly 2 nodes, a farm 2 to 16."
  }
}

variable "module_name" {
  description = "Name of the safekit module (userconfig.xml): the load balancer probes /var/modules/<module_name>/ready.txt on port 9010."
  type        = string
  default     = "webmirror"

  validation {
    # The engine's own rule for module names in the health path (safekit.daemon.health).
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", var.module_name))
    error_message = "module_name: 1-64 characters, letters, digits, '_', '.', '-', starting with a letter or digit."
  }
}

variable "vip_mode" {
  description = "How clients reach the serving node(s): lb (an internal passthrough Network Load Balancer whose health check answers only on the primary / ready farm nodes; provider gcp_ilb) or route (mirror only: a /32 route with the primary as next hop, moved by the gcp_route provider at failover)."
  type        = string
  default     = "lb"

  validation {
    condition     = contains(["lb", "route"], var.vip_mode) && (var.vip_mode == "lb" || var.kind == "mirror")
    error_message = "vip_mode: lb or route; route is for a mirror only (a farm is always load balanced)."
  }
}

variable "vip_address" {
  description = "route mode: the virtual IP, an address OUTSIDE the subnet's range (a /32 route sends it to the primary). Ignored in lb mode, where the load balancer's address is the VIP."
  type        = string
  default     = null

  validation {
    condition     = var.vip_mode != "route" || can(cidrhost("${coalesce(var.vip_address, "x")}/32", 0))
    error_message = "vip_address: an IPv4 address is required in route mode (e.g. 10.61.0.10, outside the subnet)."
  }
}

variable "app_port" {
  description = "TCP port of the application that the load balancer forwards (lb mode)."
  type        = number
  default     = 80

  validation {
    condition     = var.app_port >= 1 && var.app_port <= 65535 && !contains([22, 9010, 9453], var.app_port)
    error_message = "app_port: 1-65535, and not 22, 9010 or 9453 (ssh, health, console)."
  }
}

variable "heartbeat_port" {
  description = "UDP port of the module's heartbeats (<heart port> / <farm port>; the engine's default is 4800). A mirror's replication uses TCP heartbeat_port + 1."
  type        = number
  default     = 4800

  validation {
    condition     = var.heartbeat_port >= 1024 && var.heartbeat_port <= 65534
    error_message = "heartbeat_port: 1024-65534 (the replication port, heartbeat_port + 1, must be a port too)."
  }
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach SSH (22) and the console/API (9453) of the nodes: your workstation or bastion, e.g. [\"203.0.113.7/32\"]."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs: one or more CIDRs, and not 0.0.0.0/0 (SSH and the console are never open to the Internet)."
  }
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach the application through the load balancer (lb mode). Empty: the subnet's range only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs: a list of CIDRs."
  }
}

variable "lb_internal" {
  description = "lb mode: an internal load balancer (true: internal passthrough, reachable from the VPC network) or external (false: regional external passthrough) or an Internet-facing one (false)."
  type        = bool
  default     = true
}

variable "ssh_user" {
  description = "Admin user that the guest agent creates from the ssh-keys metadata (ssh_public_key), with sudo; Ansible logs in as it."
  type        = string
  default     = "safekit"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user)) && var.ssh_user != "root"
    error_message = "ssh_user: a Linux user name, not root."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key (one line) of the admin user."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key: an OpenSSH public key line (ssh-ed25519 AAAA..., ssh-rsa AAAA..., ecdsa-sha2-...)."
  }
}

variable "assign_public_ip" {
  description = "Give each node a public IP, so that Ansible can reach it from admin_cidrs; false: Ansible goes through the private IPs (VPN, bastion)."
  type        = bool
  default     = true
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

variable "project" {
  description = "GCP project id of the cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project: a GCP project id (6-30 characters, lower case, digits, dashes)."
  }
}

variable "region" {
  description = "GCP region of the cluster, e.g. europe-west9."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region: a GCP region name such as europe-west9."
  }
}

variable "zones" {
  description = "Zones to spread the nodes over (node i goes to zones[i % n]); empty: REGION-a and REGION-b."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for z in var.zones : startswith(z, "${var.region}-")])
    error_message = "zones: zones of the region (REGION-a, REGION-b, ...)."
  }
}

variable "machine_type" {
  description = "Machine type of the nodes."
  type        = string
  default     = "e2-small"
}

variable "image" {
  description = "Boot image of the nodes."
  type        = string
  default     = "debian-cloud/debian-12"
}

variable "create_network" {
  description = "Create a VPC network and a subnet (true), or use yours (false: set network and subnetwork)."
  type        = bool
  default     = true
}

variable "subnet_cidr" {
  description = "Range of the subnet to create (create_network = true)."
  type        = string
  default     = "10.60.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr: an IPv4 CIDR."
  }
}

variable "network" {
  description = "Bring your own network: the VPC network's name."
  type        = string
  default     = null

  validation {
    condition     = var.create_network || var.network != null
    error_message = "network: with create_network = false, name your VPC network."
  }
}

variable "subnetwork" {
  description = "Bring your own network: the subnet's self link or name (in region)."
  type        = string
  default     = null

  validation {
    condition     = var.create_network || var.subnetwork != null
    error_message = "subnetwork: with create_network = false, name the nodes' subnet."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}
