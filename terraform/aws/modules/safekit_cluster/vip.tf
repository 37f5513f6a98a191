# route mode (mirror): VIP/32 in each route table, towards the primary's ENI. The aws_route
# provider of the node that becomes primary replaces the target at failover, so Terraform must
# not put it back: ignore_changes on the target.

resource "aws_route" "vip" {
  count                  = var.vip_mode == "route" ? length(local.route_table_ids) : 0
  route_table_id         = local.route_table_ids[count.index]
  destination_cidr_block = "${var.vip_address}/32"
  network_interface_id   = aws_instance.node[0].primary_network_interface_id

  lifecycle {
    ignore_changes = [network_interface_id]
  }
}
