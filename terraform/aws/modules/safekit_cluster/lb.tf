# lb mode: a Network Load Balancer in front of every node; its health check asks each node's
# health endpoint, which answers 200 only on the primary (mirror) or on ready nodes (farm).

resource "aws_lb" "this" {
  count                            = var.vip_mode == "lb" ? 1 : 0
  name                             = "${var.name}-nlb"
  load_balancer_type               = "network"
  internal                         = var.lb_internal
  subnets                          = local.subnet_ids
  security_groups                  = [aws_security_group.lb[0].id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = false
  tags                             = local.tags
  #checkov:skip=CKV_AWS_150:safekit cloud down must be able to destroy the stack; turn deletion protection on for production stacks.
  #checkov:skip=CKV2_AWS_20:applies to Application Load Balancers; this is a Network Load Balancer forwarding TCP (TLS, if any, ends on the nodes).
  #checkov:skip=CKV_AWS_91:an NLB logs only TLS listeners; this one forwards plain TCP to the application.
}

resource "aws_lb_target_group" "app" {
  count                = var.vip_mode == "lb" ? 1 : 0
  name_prefix          = "sk-"
  port                 = var.app_port
  protocol             = "TCP"
  vpc_id               = local.vpc_id
  target_type          = "instance"
  deregistration_delay = 10
  tags                 = local.tags

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(local.health_port)
    path                = local.health_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_target_group_attachment" "node" {
  count            = var.vip_mode == "lb" ? var.node_count : 0
  target_group_arn = aws_lb_target_group.app[0].arn
  target_id        = aws_instance.node[count.index].id
  port             = var.app_port
}

resource "aws_lb_listener" "app" {
  count             = var.vip_mode == "lb" ? 1 : 0
  load_balancer_arn = aws_lb.this[0].arn
  port              = var.app_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app[0].arn
  }
}
