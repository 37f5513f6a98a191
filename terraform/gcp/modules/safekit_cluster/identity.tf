# The nodes' identity: a service account with a custom role holding exactly the permissions of
# the VIP provider in use (local.vip_actions[local.vip_provider]). lb mode calls nothing: no role.

resource "google_service_account" "nodes" {
  project      = var.project
  account_id   = "${var.name}-nodes"
  display_name = "safekit nodes of ${var.name}"
  description  = "The ${local.vip_provider} VIP provider's calls (src/safekit/vip/cloud/permissions.py)."
}

locals {
  granted_actions = local.vip_actions[local.vip_provider]
}

resource "google_project_iam_custom_role" "vip" {
  count       = length(local.granted_actions) > 0 ? 1 : 0
  project     = var.project
  role_id     = "safekitVip_${replace(var.name, "-", "_")}"
  title       = "safekit VIP operator (${var.name})"
  description = "What the safekit ${local.vip_provider} VIP provider calls."
  permissions = local.granted_actions
}

resource "google_project_iam_member" "vip" {
  count   = length(local.granted_actions) > 0 ? 1 : 0
  project = var.project
  role    = google_project_iam_custom_role.vip[0].id
  member  = "serviceAccount:${google_service_account.nodes.email}"
}
