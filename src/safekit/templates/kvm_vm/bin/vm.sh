# vm.sh: the virtual machine under libvirt, sourced by the module's scripts after
# safekit-template.sh (not a script of its own). Settings come from <user><var> of userconfig.xml.
VM_NAME=${VM_NAME:?VM_NAME is not set (the site value vm_name)}
VM_DIR=${VM_DIR:-/srv/vm}
VM_XML=$VM_DIR/$VM_NAME.xml
LIBVIRT_URI=${LIBVIRT_URI:-qemu:///system}
LIBVIRT_START_TIMEOUT=${LIBVIRT_START_TIMEOUT:-30}
VIRSH_TIMEOUT=${VIRSH_TIMEOUT:-60}
VM_CHECK_INTERVAL=${VM_CHECK_INTERVAL:-2}
VM_SHUTDOWN_TIMEOUT=${VM_SHUTDOWN_TIMEOUT:-120}
if [ "$VM_SHUTDOWN_TIMEOUT" -gt 240 ]; then
    VM_SHUTDOWN_TIMEOUT=240  # the whole stop must end within the module's nicestoptimeout (300 s)
fi

# virsh on the module's connection, killed after VIRSH_TIMEOUT seconds (a hung libvirtd must not
# hang the module).
virsh_() {
    timeout -k 5 "$VIRSH_TIMEOUT" virsh -q -c "$LIBVIRT_URI" "$@"
}

# Whether libvirt answers (status 0 or 1, for poll).
libvirt_up() {
    timeout -k 2 10 virsh -q -c "$LIBVIRT_URI" version >/dev/null 2>&1 || return 1
}

# libvirtd runs on this node, started when it does not answer: by systemd where the node runs it,
# otherwise directly (a node without systemd, such as a container). Only for the node's own
# libvirt: a remote URI is someone else's. Prints why it failed.
ensure_libvirtd() {
    libvirt_up && return 0
    case $LIBVIRT_URI in
        qemu:///system | qemu:///session) ;;
        *) echo "libvirt at $LIBVIRT_URI does not answer"; return 1 ;;
    esac
    if [ -d /run/systemd/system ]; then
        timeout 30 systemctl start libvirtd.service >/dev/null 2>&1
        how="systemctl start libvirtd"
    elif command -v libvirtd >/dev/null; then
        libvirtd --daemon >/dev/null 2>&1
        how="libvirtd --daemon"
    else
        echo "no libvirtd on this node: apt-get install libvirt-daemon-system"
        return 1
    fi
    if ! poll "$LIBVIRT_START_TIMEOUT" libvirt_up; then
        echo "libvirt does not answer at $LIBVIRT_URI ${LIBVIRT_START_TIMEOUT} s after $how"
        return 1
    fi
    LIBVIRTD_STARTED="libvirtd started ($how); "
}

# The domain's state as virsh says it (running, paused, shut off, in shutdown, crashed,
# pmsuspended), "undefined" when libvirt does not know it, "unknown" when libvirt does not answer.
vm_state() {
    _out=$(virsh_ domstate "$VM_NAME" 2>&1)
    case $? in
        0) echo "$_out" ;;
        124 | 137) echo "unknown" ;;
        *) case $_out in
               *"ailed to get domain"* | *"omain not found"*) echo "undefined" ;;
               *) echo "unknown" ;;
           esac ;;
    esac
}

# Whether the VM is off: shut off or not defined (status 0 or 1, for poll).
vm_off() {
    case $(vm_state) in
        "shut off" | undefined) return 0 ;;
        *) return 1 ;;
    esac
}

# For poll: whether the VM is off; every 10 s the ACPI power button is pressed again (a guest that
# was still booting at the first press did not see it; a guest shutting down ignores it).
off_or_press_again() {
    vm_off && return 0
    if [ $((POLLED % 100)) -eq 99 ]; then
        virsh_ shutdown "$VM_NAME" --mode acpi >/dev/null 2>&1
    fi
    return 1
}

# The pid of the VM's QEMU on this node (libvirt's pid file), if it runs.
qemu_pid() {
    pidfile_pid "/run/libvirt/qemu/$VM_NAME.pid"
}

# What in the definition breaks on the replicated directory (a FUSE file system) or loses
# acknowledged writes; prints the problem. cache none/directsync and io=native need O_DIRECT,
# which the replicated directory does not offer; cache=unsafe ignores the guest's flushes.
definition_problem() {
    if grep -Eq "cache=['\"](none|directsync)['\"]|io=['\"]native['\"]" "$VM_XML"; then
        echo "$VM_XML uses cache='none'/'directsync' or io='native' (O_DIRECT, which the replicated directory does not offer): use cache='writeback' or 'writethrough'"
    elif grep -Eq "cache=['\"]unsafe['\"]" "$VM_XML"; then
        echo "$VM_XML uses cache='unsafe': the guest's flushes would be ignored and acknowledged writes lost at a failover; use cache='writeback' or 'writethrough'"
    elif ! grep -q "<name>$VM_NAME</name>" "$VM_XML"; then
        echo "$VM_XML does not define <name>$VM_NAME</name>"
    else
        return 1
    fi
}
