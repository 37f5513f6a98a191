# route mode (mirror): VIP/32 with the primary as next hop. At failover the gcp_route provider of
# the new primary deletes and re-inserts this route (same name) with itself as next hop, so
# Terraform must not put the old next hop back.

resource "google_compute_route" "vip" {
  count                  = var.vip_mode == "route" ? 1 : 0
  project                = var.project
  name                   = local.vip_route_name
  network                = local.network_name
  dest_range             = "${var.vip_address}/32"
  next_hop_instance      = google_compute_instance.node[0].self_link
  next_hop_instance_zone = google_compute_instance.node[0].zone
  priority               = 1000 # the gcp_route provider's default priority

  lifecycle {
    ignore_changes = [next_hop_instance, next_hop_instance_zone]
  }
}
