/* The counters of mcuflow's shipped storage implementations (mcuflow_storage_sync.c). */
#ifndef MCUFLOW_STORAGE_SYNC_H
#define MCUFLOW_STORAGE_SYNC_H

#include <stdint.h>

/* Count one read of `size` bytes (mcuflow_storage_bytes_read, mcuflow_storage_reads). */
void mcuflow_storage_count(uint32_t size);
/* Count one write of `size` bytes (mcuflow_storage_bytes_written, mcuflow_storage_writes). */
void mcuflow_storage_count_write(uint32_t size);
/* Count `size` bytes erased (mcuflow_storage_bytes_erased). */
void mcuflow_storage_count_erase(uint32_t size);

#endif /* MCUFLOW_STORAGE_SYNC_H */
