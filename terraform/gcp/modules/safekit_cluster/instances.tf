# The nodes: Debian 12; the guest agent creates the admin user from the ssh-keys metadata and a
# startup script makes sure Python 3 with venv is there for Ansible.

resource "google_compute_instance" "node" {
  count          = var.node_count
  project        = var.project
  name           = local.node_names[count.index]
  zone           = local.node_zones[count.index]
  machine_type   = var.machine_type
  tags           = [local.node_tag]
  labels         = local.labels
  can_ip_forward = var.vip_mode == "route" # the primary receives packets for the VIP

  boot_disk {
    initialize_params {
      image = var.image
      size  = 16
      type  = "pd-balanced"
    }
  }

  network_interface {
    subnetwork = local.subnetwork

    dynamic "access_config" {
      for_each = var.assign_public_ip ? [1] : []
      content {}
    }
  }

  service_account {
    email  = google_service_account.nodes.email
    scopes = ["cloud-platform"] # what the account may do is its roles' business (identity.tf)
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    ssh-keys               = "${var.ssh_user}:${trimspace(var.ssh_public_key)}"
    block-project-ssh-keys = "true"
    serial-port-enable     = "false"
    startup-script         = module.handoff.startup_script
  }

  lifecycle {
    # A newer image or an edited startup script must not replace a running cluster node.
    ignore_changes = [boot_disk[0].initialize_params[0].image, metadata["startup-script"]]
  }
  #checkov:skip=CKV_GCP_40:a public IP only when assign_public_ip (default, so that Ansible reaches the nodes); the firewall opens SSH and 9453 to admin_cidrs only.
  #checkov:skip=CKV_GCP_36:IP forwarding is on in route mode only, by design: the VIP/32 route delivers packets for the VIP to the primary (docs/cloud-gcp.md).
  #checkov:skip=CKV_GCP_30:the nodes run as their own service account (google_service_account.nodes), not the default one; checkov cannot resolve the email reference.
  #checkov:skip=CKV_GCP_31:cloud-platform scope on our own least-privilege service account is Google's recommended practice: its roles, not scopes, limit it.
  #checkov:skip=CKV_GCP_38:boot disks are encrypted with Google-managed keys; customer-managed keys need a KMS key ring the user owns (docs/cloud-gcp.md).
}
