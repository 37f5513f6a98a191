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
  description = "How clients reach the serving node(s): lb (a Standard Load Balancer whose health probe answers only on the primary / ready farm nodes; provider azure_lb) or route (mirror only: a /32 route whose next hop is the primary, moved by the azure_route provider at failover)."
  type        = string
  default     = "lb"

  validation {
    condition     = contains(["lb", "route"], var.vip_mode) && (var.vip_mode == "lb" || var.kind == "mirror")
    error_message = "vip_mode: lb or route; route is for a mirror only (a farm is always load balanced)."
  }
}

variable "vip_address" {
  description = "route mode: the virtual IP, an address OUTSIDE the virtual network's address space (a /32 route sends it to the primary). Ignored in lb mode, where the load balancer's address is the VIP."
  type        = string
  default     = null

  validation {
    condition     = var.vip_mode != "route" || can(cidrhost("${coalesce(var.vip_address, "x")}/32", 0))
    error_message = "vip_address: an IPv4 address is required in route mode (e.g. 10.51.0.10, outside the virtual network)."
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
  description = "CIDRs allowed to reach the application through the load balancer (lb mode). Empty: the virtual network only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs: a list of CIDRs."
  }
}

variable "lb_internal" {
  description = "lb mode: an internal load balancer (true: a private frontend IP in the subnet) or an Internet-facing one (false)."
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

variable "location" {
  description = "Azure region of the cluster, e.g. francecentral."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location: an Azure region name in lower case without spaces (francecentral, westeurope, ...)."
  }
}

variable "zones" {
  description = "Availability zones to spread the nodes over (node i goes to zones[i % n]); empty for a region without zones."
  type        = list(string)
  default     = ["1", "2"]

  validation {
    condition     = alltrue([for z in var.zones : contains(["1", "2", "3"], z)])
    error_message = "zones: \"1\", \"2\" or \"3\"."
  }
}

variable "vm_size" {
  description = "VM size of the nodes."
  type        = string
  default     = "Standard_B2s"
}

variable "create_network" {
  description = "Create a virtual network and subnet (true), or put the nodes in your subnet (false: set subnet_id)."
  type        = bool
  default     = true
}

variable "vnet_cidr" {
  description = "Address space of the virtual network to create; the nodes' subnet is its first /24."
  type        = string
  default     = "10.50.0.0/16"

  validation {
    condition     = can(cidrhost(var.vnet_cidr, 0)) && tonumber(split("/", var.vnet_cidr)[1]) <= 24
    error_message = "vnet_cidr: an IPv4 CIDR of /24 or larger."
  }
}

variable "subnet_id" {
  description = "Bring your own network: the id of the nodes' subnet (/subscriptions/.../subnets/NAME)."
  type        = string
  default     = null

  validation {
    condition     = var.create_network || can(regex("/subnets/[^/]+$", var.subnet_id))
    error_message = "subnet_id: with create_network = false, the id of a subnet (.../virtualNetworks/VNET/subnets/NAME)."
  }
}

variable "route_table_id" {
  description = "Bring your own network, route mode: the id of the route table of the clients' subnets, which gets the VIP route. Created (and attached to the nodes' subnet) when null."
  type        = string
  default     = null

  validation {
    condition     = var.route_table_id == null || can(regex("/routeTables/[^/]+$", var.route_table_id))
    error_message = "route_table_id: the id of a route table (.../providers/Microsoft.Network/routeTables/NAME)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
