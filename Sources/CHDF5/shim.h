#ifndef VQVAE_CHDF5_SHIM_H
#define VQVAE_CHDF5_SHIM_H
// HDF5's predefined identifiers are macros that call H5open() and read globals, and its
// property-list defaults are cast macros; Swift imports neither. Each function below returns
// the value of the macro named in its comment.
#include <hdf5.h>

/// H5P_DEFAULT
static inline hid_t CHDF5_P_DEFAULT(void) { return H5P_DEFAULT; }
/// H5S_ALL
static inline hid_t CHDF5_S_ALL(void) { return H5S_ALL; }
/// H5P_FILE_ACCESS
static inline hid_t CHDF5_P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
/// H5P_DATASET_CREATE
static inline hid_t CHDF5_P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
/// H5P_DATASET_XFER
static inline hid_t CHDF5_P_DATASET_XFER(void) { return H5P_DATASET_XFER; }
/// H5P_LINK_CREATE
static inline hid_t CHDF5_P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
/// H5T_NATIVE_FLOAT
static inline hid_t CHDF5_T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
/// H5T_NATIVE_DOUBLE
static inline hid_t CHDF5_T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
/// H5T_NATIVE_UINT8
static inline hid_t CHDF5_T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
/// H5T_NATIVE_INT32
static inline hid_t CHDF5_T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
/// H5T_NATIVE_INT64
static inline hid_t CHDF5_T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
/// H5T_IEEE_F32LE
static inline hid_t CHDF5_T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
/// H5T_IEEE_F64LE
static inline hid_t CHDF5_T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
/// H5T_STD_I64LE
static inline hid_t CHDF5_T_STD_I64LE(void) { return H5T_STD_I64LE; }
/// H5T_STD_I32LE
static inline hid_t CHDF5_T_STD_I32LE(void) { return H5T_STD_I32LE; }
/// H5T_STD_U8LE
static inline hid_t CHDF5_T_STD_U8LE(void) { return H5T_STD_U8LE; }
/// H5T_C_S1
static inline hid_t CHDF5_T_C_S1(void) { return H5T_C_S1; }
/// H5T_VARIABLE
static inline size_t CHDF5_T_VARIABLE(void) { return H5T_VARIABLE; }
/// H5F_ACC_RDONLY
static inline unsigned CHDF5_F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
/// H5F_ACC_TRUNC
static inline unsigned CHDF5_F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
/// H5F_ACC_EXCL
static inline unsigned CHDF5_F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
/// H5E_DEFAULT
static inline hid_t CHDF5_E_DEFAULT(void) { return H5E_DEFAULT; }

/// H5Eset_auto2(H5E_DEFAULT, NULL, NULL): stop HDF5 from printing its error stack;
/// callers report one clear error of their own instead.
static inline herr_t CHDF5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/// The kind of object at `name` under `loc`: 1 a dataset, 2 a group, 0 something else,
/// -1 when nothing is there. Uses H5Oopen and H5Iget_type, which every HDF5 1.10+ has.
static inline int CHDF5_object_kind(hid_t loc, const char *name) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
    if (obj < 0) return -1;
    H5I_type_t type = H5Iget_type(obj);
    H5Oclose(obj);
    if (type == H5I_DATASET) return 1;
    if (type == H5I_GROUP) return 2;
    return 0;
}

#endif
