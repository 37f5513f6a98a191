# Network (created, or yours), the ports the engine uses, and the names shared by the other files.

locals {
  # The engine's constants (safekit.daemon.health.DEFAULT_PORT and its ready path; the heartbeat
  # port of <heart>/<farm>; replication = heartbeat + 1): tests/unit/terraform checks them.
  health_port      = 9010
  health_path      = "/var/modules/${var.module_name}/ready.txt"
  console_port     = 9453
  heartbeat_port   = var.heartbeat_port
  replication_port = var.heartbeat_port + 1

  vip_provider = var.vip_mode == "route" ? "aws_route" : "aws_lb"
  tags         = merge({ "safekit:cluster" = var.name }, var.tags)

  azs = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)

  # one() and try(): the branch not taken refers to resources that have no instance.
  vpc_id          = var.create_network ? one(aws_vpc.this[*].id) : try(data.aws_subnet.byo[var.vpc_subnet_ids[0]].vpc_id, null)
  subnet_ids      = var.create_network ? aws_subnet.this[*].id : var.vpc_subnet_ids
  route_table_ids = var.create_network ? aws_route_table.this[*].id : var.route_table_ids
  vpc_cidr        = var.create_network ? var.vpc_cidr : one(data.aws_vpc.byo[*].cidr_block)
}

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  state = "available"
  #checkov:skip=CKV_AWS_394:only the first two zones of the sorted list are used (slice), so a new zone does not change the set; set availability_zones to pin them by name.
}

# ------------------------------------------------------------------ bring your own network
data "aws_subnet" "byo" {
  for_each = toset(var.vpc_subnet_ids)
  id       = each.value
}

data "aws_vpc" "byo" {
  count = var.create_network ? 0 : 1
  id    = data.aws_subnet.byo[var.vpc_subnet_ids[0]].vpc_id
}

# ------------------------------------------------------------------ created network
resource "aws_vpc" "this" {
  count                = var.create_network ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = var.name })
  #checkov:skip=CKV2_AWS_11:VPC flow logs cost money per GB and need a log destination the user chooses; enable them on the VPC for production (docs/cloud-aws.md).
}

# Nothing may use the default security group of the created VPC.
resource "aws_default_security_group" "this" {
  count  = var.create_network ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_subnet" "this" {
  count                   = var.create_network ? length(local.azs) : 0
  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), count.index)
  map_public_ip_on_launch = false
  tags                    = merge(local.tags, { Name = "${var.name}-${local.azs[count.index]}" })
}

resource "aws_internet_gateway" "this" {
  count  = var.create_network ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = var.name })
}

resource "aws_route_table" "this" {
  count  = var.create_network ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = var.name })
}

resource "aws_route" "internet" {
  count                  = var.create_network ? 1 : 0
  route_table_id         = aws_route_table.this[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "this" {
  count          = var.create_network ? length(local.azs) : 0
  subnet_id      = aws_subnet.this[count.index].id
  route_table_id = aws_route_table.this[0].id
}
