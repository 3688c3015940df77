#ifndef VQVAE_CMPI_SHIM_H
#define VQVAE_CMPI_SHIM_H
// OpenMPI's handles are macros over global symbols, which Swift cannot import.
// Each function below returns the value of the macro named in its comment.
#include <mpi.h>

/// MPI_COMM_WORLD
static inline MPI_Comm CMPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
/// MPI_FLOAT
static inline MPI_Datatype CMPI_FLOAT(void) { return MPI_FLOAT; }
/// MPI_DOUBLE
static inline MPI_Datatype CMPI_DOUBLE(void) { return MPI_DOUBLE; }
/// MPI_INT64_T
static inline MPI_Datatype CMPI_INT64_T(void) { return MPI_INT64_T; }
/// MPI_BYTE
static inline MPI_Datatype CMPI_BYTE(void) { return MPI_BYTE; }
/// MPI_SUM
static inline MPI_Op CMPI_SUM(void) { return MPI_SUM; }
/// MPI_MAX
static inline MPI_Op CMPI_MAX(void) { return MPI_MAX; }
/// MPI_MIN
static inline MPI_Op CMPI_MIN(void) { return MPI_MIN; }
/// MPI_IN_PLACE
static inline void *CMPI_IN_PLACE(void) { return MPI_IN_PLACE; }
/// MPI_REQUEST_NULL
static inline MPI_Request CMPI_REQUEST_NULL(void) { return MPI_REQUEST_NULL; }
/// MPI_STATUS_IGNORE
static inline MPI_Status *CMPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
/// MPI_STATUSES_IGNORE
static inline MPI_Status *CMPI_STATUSES_IGNORE(void) { return MPI_STATUSES_IGNORE; }
/// MPI_ERRORS_RETURN
static inline MPI_Errhandler CMPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
/// MPI_SUCCESS
static inline int CMPI_SUCCESS(void) { return MPI_SUCCESS; }
/// MPI_THREAD_FUNNELED
static inline int CMPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }
/// MPI_COMM_NULL
static inline MPI_Comm CMPI_COMM_NULL(void) { return MPI_COMM_NULL; }
/// MPI_COMM_TYPE_SHARED
static inline int CMPI_COMM_TYPE_SHARED(void) { return MPI_COMM_TYPE_SHARED; }
/// MPI_UNDEFINED
static inline int CMPI_UNDEFINED(void) { return MPI_UNDEFINED; }
/// MPI_INFO_NULL
static inline MPI_Info CMPI_INFO_NULL(void) { return MPI_INFO_NULL; }
/// MPI_MAX_ERROR_STRING
static inline int CMPI_MAX_ERROR_STRING(void) { return MPI_MAX_ERROR_STRING; }

#endif
