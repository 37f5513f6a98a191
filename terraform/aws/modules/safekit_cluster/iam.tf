# The nodes' identity: an instance role that allows exactly the calls of the VIP provider in use
# (local.vip_actions[local.vip_provider]), nothing else. lb mode calls nothing: no policy.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${var.name}-node-"
  description        = "safekit nodes of ${var.name}: the calls of the ${local.vip_provider} VIP provider"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = local.tags
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.name}-node-"
  role        = aws_iam_role.node.name
  tags        = local.tags
}

locals {
  granted_actions = local.vip_actions[local.vip_provider]
  # Describe calls cannot be scoped to a resource in IAM; the writes can: the route tables.
  granted_reads  = [for a in local.granted_actions : a if startswith(a, "ec2:Describe")]
  granted_writes = [for a in local.granted_actions : a if !startswith(a, "ec2:Describe")]
  write_resources = local.vip_provider == "aws_route" ? [
    for id in local.route_table_ids :
    "arn:aws:ec2:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:route-table/${id}"
  ] : ["*"]
}

resource "aws_iam_role_policy" "vip" {
  count = length(local.granted_actions) > 0 ? 1 : 0
  name  = "safekit-vip"
  role  = aws_iam_role.node.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      length(local.granted_reads) > 0 ? [{ Sid = "SafekitVipRead", Effect = "Allow", Action = local.granted_reads, Resource = "*" }] : [],
      length(local.granted_writes) > 0 ? [{ Sid = "SafekitVipWrite", Effect = "Allow", Action = local.granted_writes, Resource = local.write_resources }] : [],
    )
  })
}
