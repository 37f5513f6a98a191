# The nodes: Debian 12, cloud-init prepares SSH and Python for Ansible.

resource "azurerm_public_ip" "node" {
  count               = var.assign_public_ip ? var.node_count : 0
  name                = "${local.node_names[count.index]}-ip"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = length(var.zones) > 0 ? [var.zones[count.index % length(var.zones)]] : null
  tags                = local.tags
}

resource "azurerm_network_interface" "node" {
  count               = var.node_count
  name                = "${local.node_names[count.index]}-nic"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  # route mode: the primary receives packets addressed to the VIP, which is not its own address.
  ip_forwarding_enabled = var.vip_mode == "route"
  tags                  = local.tags

  ip_configuration {
    name                          = "primary"
    subnet_id                     = local.subnet_id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = var.assign_public_ip ? azurerm_public_ip.node[count.index].id : null
  }
  #checkov:skip=CKV_AZURE_118:IP forwarding is on in route mode only, by design: the VIP/32 route delivers packets for the VIP to the primary's NIC (docs/cloud-azure.md).
  #checkov:skip=CKV_AZURE_119:a public IP only when assign_public_ip (default, so that Ansible reaches the nodes); the NSG opens SSH and 9453 to admin_cidrs only.
}

resource "azurerm_network_interface_security_group_association" "node" {
  count                     = var.node_count
  network_interface_id      = azurerm_network_interface.node[count.index].id
  network_security_group_id = azurerm_network_security_group.nodes.id
}

resource "azurerm_network_interface_application_security_group_association" "node" {
  count                         = var.node_count
  network_interface_id          = azurerm_network_interface.node[count.index].id
  application_security_group_id = azurerm_application_security_group.nodes.id
}

resource "azurerm_linux_virtual_machine" "node" {
  count                           = var.node_count
  name                            = local.node_names[count.index]
  computer_name                   = local.node_names[count.index]
  location                        = var.location
  resource_group_name             = azurerm_resource_group.this.name
  size                            = var.vm_size
  zone                            = length(var.zones) > 0 ? var.zones[count.index % length(var.zones)] : null
  admin_username                  = var.ssh_user
  disable_password_authentication = true
  network_interface_ids           = [azurerm_network_interface.node[count.index].id]
  allow_extension_operations      = false
  custom_data                     = base64encode(module.handoff.cloud_init[count.index])
  tags                            = local.tags

  admin_ssh_key {
    username   = var.ssh_user
    public_key = trimspace(var.ssh_public_key)
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.nodes.id]
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "StandardSSD_LRS"
    disk_size_gb         = 30
  }

  source_image_reference {
    publisher = "Debian"
    offer     = "debian-12"
    sku       = "12-gen2"
    version   = "latest"
  }

  lifecycle {
    # An edited cloud-init must not replace a running cluster node.
    ignore_changes = [custom_data]
  }
  #checkov:skip=CKV_AZURE_50:extensions are off (allow_extension_operations = false); checkov flags the attribute's presence.
}
