-- The rows of the Parquet file $file, from its footer.
SELECT num_rows FROM parquet_file_metadata($file::VARCHAR)
