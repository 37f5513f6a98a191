terraform {
  # 1.9: a variable's validation may refer to other variables (kind and node_count, vip_mode).
  required_version = ">= 1.9.0, < 2.0.0"

  # A reusable module sets lower bounds only (>=); the root module that calls it (examples/)
  # caps the major version with ~>.
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.10"
    }
  }
}
