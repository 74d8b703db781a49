package drivers

import "strconv"

// Limits of `qemu-img info`, Cinder's and Nova's QEMU_IMG_LIMITS
// (oslo_concurrency ProcessLimits(cpu_time=30, address_space=1 GiB)): a
// crafted image header (a huge L1 table, a refcount loop, a deep chain) must
// not hold a storage host's CPU or memory. qemu-img killed by a limit exits
// on a signal, which callers see as a failed command.
const (
	QemuImgInfoCPUSeconds   = 30
	QemuImgInfoAddressSpace = 1 << 30
)

// QemuImgInfo is the argv that reads what qemu-img says of the image p
// opened as format: `qemu-img info --output=json -f format p` under
// prlimit(1) (util-linux) with the limits above. The format is always
// given, never probed: a guest can write any header into a raw volume, and
// a probed qcow2 header names backing files and protocols of its choosing.
// Without --backing-chain qemu-img opens p alone (BDRV_O_NO_BACKING): the
// backing file it reports is not opened, so the caller can check the name
// first.
func QemuImgInfo(format, p string) []string {
	return []string{
		"prlimit", "--cpu=" + strconv.Itoa(QemuImgInfoCPUSeconds), "--as=" + strconv.Itoa(QemuImgInfoAddressSpace), "--",
		"qemu-img", "info", "--output=json", "-f", format, p,
	}
}
