terraform {
  # The same floor as the stacks that call it (terraform/*/modules/safekit_cluster).
  required_version = ">= 1.9.0, < 2.0.0"

  # No provider: this module only renders text (templatefile), so that the three clouds share
  # it and the tests apply it offline (docs/adr/0040-shared-handoff-module.md).
}
