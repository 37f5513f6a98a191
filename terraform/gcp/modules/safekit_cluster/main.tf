# Network (created, or yours), and the names shared by the other files.

locals {
  # The engine's constants (safekit.daemon.health.DEFAULT_PORT and its ready path; the heartbeat
  # port of <heart>/<farm>; replication = heartbeat + 1): tests/unit/terraform checks them.
  health_port      = 9010
  health_path      = "/var/modules/${var.module_name}/ready.txt"
  console_port     = 9453
  heartbeat_port   = var.heartbeat_port
  replication_port = var.heartbeat_port + 1

  vip_provider = var.vip_mode == "route" ? "gcp_route" : "gcp_ilb"
  labels       = merge({ safekit-cluster = var.name }, var.labels)
  node_tag     = "${var.name}-node"
  node_names   = [for i in range(var.node_count) : "${var.name}-node${i + 1}"]
  zones        = length(var.zones) > 0 ? var.zones : ["${var.region}-a", "${var.region}-b"]
  node_zones   = [for i in range(var.node_count) : local.zones[i % length(local.zones)]]

  network_name = var.create_network ? one(google_compute_network.this[*].name) : var.network
  subnetwork   = var.create_network ? one(google_compute_subnetwork.nodes[*].self_link) : var.subnetwork
  subnet_range = var.create_network ? var.subnet_cidr : one(data.google_compute_subnetwork.byo[*].ip_cidr_range)
  # Google's health checkers: internal passthrough LBs, and external passthrough LBs.
  health_check_ranges = var.lb_internal ? ["35.191.0.0/16", "130.211.0.0/22"] : ["35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22"]
  vip_route_name      = "${var.name}-vip"
}

resource "google_compute_network" "this" {
  count                   = var.create_network ? 1 : 0
  project                 = var.project
  name                    = var.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "nodes" {
  count                    = var.create_network ? 1 : 0
  project                  = var.project
  name                     = "${var.name}-nodes"
  region                   = var.region
  network                  = google_compute_network.this[0].id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
  #checkov:skip=CKV_GCP_26:VPC flow logs cost money per GB; turn log_config on for production (docs/cloud-gcp.md).
  #checkov:skip=CKV_GCP_76:IPv4 only: the engine's VIPs are IPv4 (docs/vip.md), so the subnet has no IPv6 range to protect.
}

data "google_compute_subnetwork" "byo" {
  count     = var.create_network ? 0 : 1
  project   = var.project
  region    = var.region
  self_link = startswith(var.subnetwork, "https://") || startswith(var.subnetwork, "projects/") ? var.subnetwork : null
  name      = startswith(var.subnetwork, "https://") || startswith(var.subnetwork, "projects/") ? null : var.subnetwork
}
