# The nodes: Debian 12, cloud-init prepares SSH and Python for Ansible; nothing of safekit yet
# (the playbooks install it).

data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"] # Debian's official account

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

resource "aws_instance" "node" {
  count                       = var.node_count
  ami                         = coalesce(var.ami_id, data.aws_ami.debian.id)
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_ids[count.index % length(local.subnet_ids)]
  vpc_security_group_ids      = [aws_security_group.nodes.id]
  iam_instance_profile        = aws_iam_instance_profile.node.name
  associate_public_ip_address = var.assign_public_ip
  # route mode: the primary receives packets addressed to the VIP, which is not its own address.
  source_dest_check = var.vip_mode != "route"
  monitoring        = true
  ebs_optimized     = true
  user_data         = module.handoff.cloud_init[count.index]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only; the providers use it
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 16
    encrypted   = true
  }

  tags = merge(local.tags, { Name = "${var.name}-node${count.index + 1}" })

  lifecycle {
    # A newer Debian AMI or an edited cloud-init must not replace a running cluster node.
    ignore_changes = [ami, user_data]
  }
  #checkov:skip=CKV_AWS_88:a public IP only when assign_public_ip (default, so that Ansible reaches the nodes); the security group opens SSH and 9453 to admin_cidrs only, never 0.0.0.0/0.
  #checkov:skip=CKV2_AWS_41:the instance profile is attached (aws_iam_instance_profile.node); checkov cannot follow the name reference through name_prefix.
}
