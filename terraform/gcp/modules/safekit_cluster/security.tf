# Who may reach the nodes (a VPC network denies all ingress unless a rule allows it): heartbeats
# (UDP) and replication (TCP) only from the other nodes (network tag); SSH and the console from
# admin_cidrs; the health port from Google's health checkers.

resource "google_compute_firewall" "heartbeat" {
  project     = var.project
  name        = "${var.name}-heartbeat"
  network     = local.network_name
  description = "safekit heartbeats between the nodes"
  direction   = "INGRESS"
  source_tags = [local.node_tag]
  target_tags = [local.node_tag]

  allow {
    protocol = "udp"
    ports    = [tostring(local.heartbeat_port)]
  }
}

resource "google_compute_firewall" "replication" {
  count       = var.kind == "mirror" ? 1 : 0
  project     = var.project
  name        = "${var.name}-replication"
  network     = local.network_name
  description = "safekit replication between the nodes"
  direction   = "INGRESS"
  source_tags = [local.node_tag]
  target_tags = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.replication_port)]
  }
}

resource "google_compute_firewall" "icmp" {
  project     = var.project
  name        = "${var.name}-icmp"
  network     = local.network_name
  description = "ping between the nodes"
  direction   = "INGRESS"
  source_tags = [local.node_tag]
  target_tags = [local.node_tag]

  allow {
    protocol = "icmp"
  }
}

resource "google_compute_firewall" "admin" {
  project       = var.project
  name          = "${var.name}-admin"
  network       = local.network_name
  description   = "SSH (Ansible) and the safekit console/API from the admins"
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = ["22", tostring(local.console_port)]
  }
}

resource "google_compute_firewall" "health" {
  count         = var.vip_mode == "lb" ? 1 : 0
  project       = var.project
  name          = "${var.name}-health"
  network       = local.network_name
  description   = "Google's health checkers to the safekit health endpoint"
  direction     = "INGRESS"
  source_ranges = local.health_check_ranges
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.health_port)]
  }
}

# Passthrough load balancers and the VIP route keep the clients' addresses.
resource "google_compute_firewall" "app" {
  project       = var.project
  name          = "${var.name}-app"
  network       = local.network_name
  description   = "clients of the application"
  direction     = "INGRESS"
  source_ranges = length(var.client_cidrs) > 0 ? var.client_cidrs : [local.subnet_range]
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.app_port)]
  }
}
