namespace Srlm.Model;

/// <summary>One tensor's entry in a safetensors header: offsets are relative to the data section.</summary>
public sealed record SafeTensorEntry(string Name, string Dtype, long[] Shape, long Begin, long End)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>A validated safetensors header: every entry has a known dtype, a size that matches its shape,
/// and offsets inside the file. Nothing is read beyond the header until <see cref="Read"/>.</summary>
public sealed class SafeTensorsHeader
{
    public string Path { get; }
    public long DataStart { get; }
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsHeader(string path, long dataStart, Dictionary<string, SafeTensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path; DataStart = dataStart; Entries = entries; Metadata = metadata;
    }

    internal static readonly Dictionary<string, (ScalarType Type, int Size)> Dtypes = new(StringComparer.Ordinal)
    {
        ["F32"] = (ScalarType.Float32, 4),
        ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2),
        ["F64"] = (ScalarType.Float64, 8),
        ["I64"] = (ScalarType.Int64, 8),
        ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2),
        ["I8"] = (ScalarType.Int8, 1),
        ["U8"] = (ScalarType.Byte, 1),
        ["BOOL"] = (ScalarType.Bool, 1),
    };

    internal static string DtypeName(ScalarType t) => Dtypes.First(kv => kv.Value.Type == t).Key;

    /// <summary>Reads and validates the header; throws CheckpointException naming the file on any problem.</summary>
    public static SafeTensorsHeader Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "file is missing");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = fs.Length;
        if (fileLength < 8) throw new CheckpointException(path, $"truncated: {fileLength} bytes, shorter than the 8-byte header length");
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        ulong headerLength = BitConverter.ToUInt64(lenBytes);
        if (headerLength > (ulong)(fileLength - 8))
            throw new CheckpointException(path, $"header length {headerLength} runs beyond the end of the file ({fileLength} bytes)");
        if (headerLength > 100_000_000) throw new CheckpointException(path, $"header length {headerLength} is implausibly large");
        var headerBytes = new byte[headerLength];
        fs.ReadExactly(headerBytes);

        JsonObject root;
        try
        {
            root = JsonNode.Parse(headerBytes) as JsonObject ?? throw new CheckpointException(path, "unparsable header: not a JSON object");
        }
        catch (JsonException e) { throw new CheckpointException(path, $"unparsable header ({LlamaConfig.OneLine(e.Message)})", e); }

        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, node) in root)
        {
            if (name == "__metadata__")
            {
                if (node is JsonObject meta)
                    foreach (var (k, v) in meta) metadata[k] = v?.ToString() ?? "";
                continue;
            }
            try
            {
                if (node is not JsonObject e) throw new CheckpointException(path, $"unparsable header: entry '{name}' is not an object");
                var dtype = e["dtype"]?.GetValue<string>() ?? throw new CheckpointException(path, $"unparsable header: tensor '{name}' has no dtype");
                if (!Dtypes.TryGetValue(dtype, out var dt)) throw new CheckpointException(path, $"tensor '{name}' has unknown dtype '{dtype}'");
                var shape = (e["shape"] as JsonArray ?? throw new CheckpointException(path, $"unparsable header: tensor '{name}' has no shape"))
                    .Select(x => x!.GetValue<long>()).ToArray();
                if (shape.Any(d => d < 0)) throw new CheckpointException(path, $"tensor '{name}' has a negative dimension");
                var offs = e["data_offsets"] as JsonArray;
                if (offs is null || offs.Count != 2) throw new CheckpointException(path, $"unparsable header: tensor '{name}' needs data_offsets [begin, end]");
                long begin = offs[0]!.GetValue<long>(), end = offs[1]!.GetValue<long>();
                var entry = new SafeTensorEntry(name, dtype, shape, begin, end);
                if (begin < 0 || end < begin || end > dataLength)
                    throw new CheckpointException(path, $"tensor '{name}' offsets [{begin}, {end}] are out of range (data section has {dataLength} bytes; file truncated?)");
                if (end - begin != entry.Count * dt.Size)
                    throw new CheckpointException(path, $"tensor '{name}' spans {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtype} needs {entry.Count * dt.Size}");
                entries[name] = entry;
            }
            catch (Exception ex) when (ex is InvalidOperationException or FormatException or JsonException)
            {
                throw new CheckpointException(path, $"unparsable header entry '{name}' ({LlamaConfig.OneLine(ex.Message)})", ex);
            }
        }
        return new SafeTensorsHeader(path, dataStart, entries, metadata);
    }

    /// <summary>Reads one tensor (CPU) in its stored dtype, converted to <paramref name="dtype"/> when given.</summary>
    public Tensor Read(string name, ScalarType? dtype = null)
    {
        var e = Entries.TryGetValue(name, out var found) ? found : throw new CheckpointException(Path, $"missing tensor '{name}'");
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return Read(fs, e, dtype);
    }

    /// <summary>Reads several tensors with one open file handle.</summary>
    public Dictionary<string, Tensor> ReadAll(IEnumerable<string> names, ScalarType? dtype = null)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        foreach (var n in names)
        {
            var e = Entries.TryGetValue(n, out var found) ? found : throw new CheckpointException(Path, $"missing tensor '{n}'");
            result[n] = Read(fs, e, dtype);
        }
        return result;
    }

    private Tensor Read(FileStream fs, SafeTensorEntry e, ScalarType? dtype)
    {
        var stored = Dtypes[e.Dtype].Type;
        var t = empty(e.Shape, stored, device: CPU); // read from the file into host memory; the model copies it to its device
        try
        {
            fs.Seek(DataStart + e.Begin, SeekOrigin.Begin);
            if (e.End > e.Begin) fs.ReadExactly(t.bytes);
        }
        catch (EndOfStreamException ex)
        {
            t.Dispose();
            throw new CheckpointException(Path, $"truncated while reading tensor '{e.Name}'", ex);
        }
        if (dtype is { } want && want != stored)
        {
            var converted = t.to(want);
            t.Dispose();
            return converted;
        }
        return t;
    }
}

/// <summary>Writes safetensors files (little-endian, 8-byte aligned data, keys sorted).</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        var meta = new JsonObject { ["format"] = "pt" };
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        header["__metadata__"] = meta;
        long offset = 0;
        var sizes = new long[list.Count];
        for (int i = 0; i < list.Count; i++)
        {
            var t = list[i].Value;
            long bytes = t.numel() * t.ElementSize;
            sizes[i] = bytes;
            header[list[i].Key] = new JsonObject
            {
                ["dtype"] = SafeTensorsHeader.DtypeName(t.dtype),
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var headerText = header.ToJsonString();
        int pad = (8 - Encoding.UTF8.GetByteCount(headerText) % 8) % 8;
        var headerBytes = Encoding.UTF8.GetBytes(headerText + new string(' ', pad));

        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            fs.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
            fs.Write(headerBytes);
            foreach (var (_, t) in list)
            {
                using var scope = NewDisposeScope();
                var c = t.detach().cpu().contiguous();
                fs.Write(c.bytes);
            }
            fs.Flush(true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
