# The API actions each safekit VIP provider of AWS calls, copied from the single source of truth,
# src/safekit/vip/cloud/permissions.py (required actions only: the optional ones of aws_lb serve its
# target_group_arn option, which this stack does not use: its target group registers every node
# and the health check picks the serving one). tests/unit/terraform checks that this map equals
# permissions.py for every provider and that nothing else in terraform/aws grants an action.
locals {
  vip_actions = {
    aws_route = [
      "ec2:CreateRoute",
      "ec2:DescribeRouteTables",
      "ec2:ReplaceRoute",
    ]
    aws_eni_ip = [
      "ec2:AssignPrivateIpAddresses",
      "ec2:DescribeNetworkInterfaces",
      "ec2:UnassignPrivateIpAddresses",
    ]
    aws_eip = [
      "ec2:AssociateAddress",
      "ec2:DescribeAddresses",
      "ec2:DisassociateAddress",
    ]
    aws_lb = []
  }
}
