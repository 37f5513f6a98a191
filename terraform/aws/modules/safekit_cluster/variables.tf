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
  description = "How clients reach the serving node(s): lb (a Network Load Balancer whose health check answers only on the primary / ready farm nodes; provider aws_lb) or route (mirror only: a /32 route to the primary's ENI that the aws_route provider moves at failover)."
  type        = string
  default     = "lb"

  validation {
    condition     = contains(["lb", "route"], var.vip_mode) && (var.vip_mode == "lb" || var.kind == "mirror")
    error_message = "vip_mode: lb or route; route is for a mirror only (a farm is always load balanced)."
  }
}

variable "vip_address" {
  description = "route mode: the virtual IP, an address OUTSIDE the VPC's CIDR (AWS routes it to the primary's ENI by a /32 route). Ignored in lb mode, where the load balancer's address is the VIP."
  type        = string
  default     = null

  validation {
    condition     = var.vip_mode != "route" || can(cidrhost("${coalesce(var.vip_address, "x")}/32", 0))
    error_message = "vip_address: an IPv4 address is required in route mode (e.g. 172.31.255.10, outside the VPC's CIDR)."
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
  description = "CIDRs allowed to reach the application through the load balancer (lb mode). Empty: the VPC's CIDR only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs: a list of CIDRs."
  }
}

variable "lb_internal" {
  description = "lb mode: an internal load balancer (true, reachable from the VPC) or an Internet-facing one (false)."
  type        = bool
  default     = true
}

variable "ssh_user" {
  description = "Admin user that cloud-init creates with ssh_public_key and passwordless sudo; Ansible logs in as it."
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

variable "instance_type" {
  description = "EC2 instance type of the nodes."
  type        = string
  default     = "t3.small"
}

variable "ami_id" {
  description = "AMI of the nodes; null: the latest official Debian 12 (amd64) image."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", coalesce(var.ami_id, "x")))
    error_message = "ami_id: an AMI id (ami-0123abcd...), or null."
  }
}

variable "assign_public_ip" {
  description = "Give each node a public IP, so that Ansible can reach it from admin_cidrs; false: Ansible goes through the private IPs (VPN, bastion)."
  type        = bool
  default     = true
}

variable "create_network" {
  description = "Create a VPC, subnets (one per zone), an Internet gateway and a route table (true), or use yours (false: set vpc_subnet_ids and route_table_ids)."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR of the VPC to create (create_network = true); subnets are /24s in it."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 22
    error_message = "vpc_cidr: an IPv4 CIDR of /22 or larger."
  }
}

variable "availability_zones" {
  description = "Zones to spread the nodes over (created network); empty: the first two of the region."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for z in var.availability_zones : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$", z))])
    error_message = "availability_zones: zone names such as eu-west-3a."
  }
}

variable "vpc_subnet_ids" {
  description = "Bring your own network: the subnets of the nodes (one or more, same VPC); nodes are spread over them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.vpc_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "vpc_subnet_ids: subnet ids (subnet-0123abcd...)."
  }

  validation {
    condition     = var.create_network || length(var.vpc_subnet_ids) > 0
    error_message = "vpc_subnet_ids: with create_network = false, name the subnets of the nodes."
  }
}

variable "route_table_ids" {
  description = "Bring your own network, route mode: the route tables that must route the VIP to the primary (every table of the subnets where clients are)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.route_table_ids : can(regex("^rtb-[0-9a-f]+$", r))])
    error_message = "route_table_ids: route table ids (rtb-0123abcd...)."
  }

  validation {
    condition     = var.create_network || var.vip_mode != "route" || length(var.route_table_ids) > 0
    error_message = "route_table_ids: with your own network in route mode, name the route tables that must carry the VIP."
  }
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

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
