# Who may reach the nodes: heartbeats (UDP) and replication (TCP) only from the other nodes; SSH
# and the console from admin_cidrs; the health port and the application from the load balancer.

resource "aws_security_group" "nodes" {
  name_prefix = "${var.name}-nodes-"
  description = "safekit ${var.kind} nodes of ${var.name}"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-nodes" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "heartbeat" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "safekit heartbeats between the nodes"
  ip_protocol                  = "udp"
  from_port                    = local.heartbeat_port
  to_port                      = local.heartbeat_port
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_ingress_rule" "replication" {
  count                        = var.kind == "mirror" ? 1 : 0
  security_group_id            = aws_security_group.nodes.id
  description                  = "safekit replication between the nodes"
  ip_protocol                  = "tcp"
  from_port                    = local.replication_port
  to_port                      = local.replication_port
  referenced_security_group_id = aws_security_group.nodes.id
}

# The witness answers pings; the nodes ping each other too (ping checkers).
resource "aws_vpc_security_group_ingress_rule" "icmp" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "ping between the nodes"
  ip_protocol                  = "icmp"
  from_port                    = -1
  to_port                      = -1
  referenced_security_group_id = aws_security_group.nodes.id
  #checkov:skip=CKV_AWS_277:false positive: the source is the nodes' own security group (referenced_security_group_id), not 0.0.0.0/0; checkov reads a rule without cidr_ipv4 as open.
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.admin_cidrs)
  security_group_id = aws_security_group.nodes.id
  description       = "SSH from the admins (Ansible)"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "console" {
  for_each          = toset(var.admin_cidrs)
  security_group_id = aws_security_group.nodes.id
  description       = "safekit console and REST API (HTTPS) from the admins"
  ip_protocol       = "tcp"
  from_port         = local.console_port
  to_port           = local.console_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "health" {
  count                        = var.vip_mode == "lb" ? 1 : 0
  security_group_id            = aws_security_group.nodes.id
  description                  = "health checks of the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.health_port
  to_port                      = local.health_port
  referenced_security_group_id = aws_security_group.lb[0].id
}

resource "aws_vpc_security_group_ingress_rule" "app_from_lb" {
  count                        = var.vip_mode == "lb" ? 1 : 0
  security_group_id            = aws_security_group.nodes.id
  description                  = "application traffic through the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.lb[0].id
  #checkov:skip=CKV_AWS_260:false positive: the source is the load balancer's security group (referenced_security_group_id), not 0.0.0.0/0.
}

resource "aws_vpc_security_group_ingress_rule" "app_route" {
  for_each          = var.vip_mode == "route" ? toset(length(var.client_cidrs) > 0 ? var.client_cidrs : [local.vpc_cidr]) : toset([])
  security_group_id = aws_security_group.nodes.id
  description       = "application traffic to the VIP (route mode)"
  ip_protocol       = "tcp"
  from_port         = var.app_port
  to_port           = var.app_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "cluster" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "heartbeats, replication and commands to the other nodes"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.nodes.id
}

# HTTPS out: the EC2/ELB APIs (VIP providers), package mirrors; HTTP out: Debian's mirrors.
resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.nodes.id
  description       = "cloud APIs and package mirrors (HTTPS)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.nodes.id
  description       = "Debian package mirrors (HTTP, signed packages)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "witness" {
  count             = var.witness_address == null ? 0 : 1
  security_group_id = aws_security_group.nodes.id
  description       = "ping the split-brain witness"
  ip_protocol       = "icmp"
  from_port         = -1
  to_port           = -1
  cidr_ipv4         = "${var.witness_address}/32"
}

# ------------------------------------------------------------------ the load balancer's group
resource "aws_security_group" "lb" {
  count       = var.vip_mode == "lb" ? 1 : 0
  name_prefix = "${var.name}-lb-"
  description = "load balancer of ${var.name}"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_clients" {
  for_each          = var.vip_mode == "lb" ? toset(length(var.client_cidrs) > 0 ? var.client_cidrs : [local.vpc_cidr]) : toset([])
  security_group_id = aws_security_group.lb[0].id
  description       = "clients of the application"
  ip_protocol       = "tcp"
  from_port         = var.app_port
  to_port           = var.app_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "lb_app" {
  count                        = var.vip_mode == "lb" ? 1 : 0
  security_group_id            = aws_security_group.lb[0].id
  description                  = "to the application on the nodes"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_egress_rule" "lb_health" {
  count                        = var.vip_mode == "lb" ? 1 : 0
  security_group_id            = aws_security_group.lb[0].id
  description                  = "health checks to the nodes"
  ip_protocol                  = "tcp"
  from_port                    = local.health_port
  to_port                      = local.health_port
  referenced_security_group_id = aws_security_group.nodes.id
}
