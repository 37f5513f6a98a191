# The nodes' identity: one user-assigned managed identity, a custom role with exactly the calls
# of the VIP provider in use (local.vip_actions[local.vip_provider]), assigned on the resource
# group that holds the route table (route mode). lb mode calls nothing: no role.

resource "azurerm_user_assigned_identity" "nodes" {
  name                = "${var.name}-nodes"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

locals {
  granted_actions = local.vip_actions[local.vip_provider]
  role_scope      = var.route_table_id != null ? join("/", slice(split("/", var.route_table_id), 0, 5)) : azurerm_resource_group.this.id
}

resource "azurerm_role_definition" "vip" {
  count       = length(local.granted_actions) > 0 ? 1 : 0
  name        = "${var.name} safekit VIP operator"
  scope       = local.role_scope
  description = "What the safekit ${local.vip_provider} VIP provider calls (src/safekit/vip/cloud/permissions.py)."

  permissions {
    actions     = local.granted_actions
    not_actions = []
  }

  assignable_scopes = [local.role_scope]
}

resource "azurerm_role_assignment" "vip" {
  count              = length(local.granted_actions) > 0 ? 1 : 0
  scope              = local.role_scope
  role_definition_id = azurerm_role_definition.vip[0].role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.nodes.principal_id
  principal_type     = "ServicePrincipal"
}
