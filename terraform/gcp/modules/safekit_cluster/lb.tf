# lb mode: a passthrough Network Load Balancer (internal by default) in front of every node; its
# health check asks each node's health endpoint, which answers 200 only on the primary (mirror)
# or on ready nodes (farm).

resource "google_compute_instance_group" "nodes" {
  for_each  = var.vip_mode == "lb" ? toset(distinct(local.node_zones)) : toset([])
  project   = var.project
  name      = "${var.name}-${each.value}"
  zone      = each.value
  instances = [for i, node in google_compute_instance.node : node.self_link if local.node_zones[i] == each.value]
}

resource "google_compute_region_health_check" "ready" {
  count               = var.vip_mode == "lb" ? 1 : 0
  project             = var.project
  name                = "${var.name}-ready"
  region              = var.region
  check_interval_sec  = 5
  timeout_sec         = 4
  healthy_threshold   = 2
  unhealthy_threshold = 2

  http_health_check {
    port         = local.health_port
    request_path = local.health_path
  }
}

resource "google_compute_region_backend_service" "app" {
  count                 = var.vip_mode == "lb" ? 1 : 0
  project               = var.project
  name                  = "${var.name}-app"
  region                = var.region
  protocol              = "TCP"
  load_balancing_scheme = var.lb_internal ? "INTERNAL" : "EXTERNAL"
  health_checks         = [google_compute_region_health_check.ready[0].id]

  dynamic "backend" {
    for_each = google_compute_instance_group.nodes
    content {
      group          = backend.value.self_link
      balancing_mode = "CONNECTION"
    }
  }
}

resource "google_compute_forwarding_rule" "app" {
  count                 = var.vip_mode == "lb" ? 1 : 0
  project               = var.project
  name                  = "${var.name}-app"
  region                = var.region
  load_balancing_scheme = var.lb_internal ? "INTERNAL" : "EXTERNAL"
  backend_service       = google_compute_region_backend_service.app[0].id
  ip_protocol           = "TCP"
  ports                 = [tostring(var.app_port)]
  network               = var.lb_internal ? local.network_name : null
  subnetwork            = var.lb_internal ? local.subnetwork : null
  labels                = local.labels
}
