namespace Srlm.Storage.Mongo;

// MongoArtifactStore: jobs.
public sealed partial class MongoArtifactStore
{
    private static JobRecord ReadJob(BsonDocument d) => new()
    {
        Id = d["_id"].AsString,
        Kind = Enum.Parse<JobKind>(d["kind"].AsString),
        RunId = d["run_id"].AsString,
        Iteration = d["iteration"].ToInt32(),
        State = Enum.Parse<JobState>(d["state"].AsString),
        InputCheckpointId = Str(d, "input_checkpoint_id"),
        DatasetId = Str(d, "dataset_id"),
        OutputCheckpointId = Str(d, "output_checkpoint_id"),
        StateDir = Str(d, "state_dir"),
        ParametersJson = Str(d, "parameters_json"),
        Owner = Str(d, "owner"),
        HeartbeatAt = TimeOrNull(d, "heartbeat_at"),
        Step = d["step"].ToInt64(),
        TotalSteps = d["total_steps"].IsBsonNull ? null : d["total_steps"].ToInt64(),
        Attempts = d["attempts"].ToInt32(),
        Error = Str(d, "error"),
        CreatedAt = Time(d["created_at"]),
        UpdatedAt = Time(d["updated_at"]),
    };

    public Task<WriteOutcome> EnqueueJobAsync(JobRecord job, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(job.Id);
        return R(async token =>
        {
            var now = NowUtc();
            try
            {
                await _jobs.InsertOneAsync(new BsonDocument
                {
                    { "_id", job.Id }, { "kind", job.Kind.ToString() }, { "run_id", job.RunId }, { "iteration", job.Iteration },
                    { "state", nameof(JobState.Queued) }, { "input_checkpoint_id", Nullable(job.InputCheckpointId) }, { "dataset_id", Nullable(job.DatasetId) },
                    { "output_checkpoint_id", Nullable(job.OutputCheckpointId) }, { "state_dir", Nullable(job.StateDir) },
                    { "parameters_json", Nullable(job.ParametersJson) }, { "owner", BsonNull.Value }, { "heartbeat_at", BsonNull.Value },
                    { "step", 0L }, { "total_steps", Nullable(job.TotalSteps) }, { "attempts", 0 }, { "error", BsonNull.Value },
                    { "created_at", now }, { "updated_at", now }, { "version", 0L },
                }, cancellationToken: token);
                return WriteOutcome.Inserted;
            }
            catch (MongoWriteException e) when (IsDuplicateKey(e))
            {
                return WriteOutcome.Unchanged;
            }
        }, ct);
    }

    public Task<JobRecord?> GetJobAsync(string jobId, CancellationToken ct = default) => R(async token =>
    {
        var d = await _jobs.Find(new BsonDocument("_id", jobId)).FirstOrDefaultAsync(token);
        return d is null ? null : ReadJob(d);
    }, ct);

    public Task<IReadOnlyList<JobRecord>> ListJobsAsync(string? runId = null, JobState? state = null, CancellationToken ct = default) => R(async token =>
    {
        var f = new BsonDocument();
        if (runId is not null) f["run_id"] = runId;
        if (state is not null) f["state"] = state.Value.ToString();
        var docs = await _jobs.Find(f).Sort(new BsonDocument { { "created_at", 1 }, { "_id", 1 } }).ToListAsync(token);
        return (IReadOnlyList<JobRecord>)docs.Select(ReadJob).ToList();
    }, ct);

    private bool Claimable(BsonDocument d, string owner, DateTime now, TimeSpan staleAfter)
    {
        var state = d["state"].AsString;
        if (state == nameof(JobState.Queued)) return true;
        if (state != nameof(JobState.Running)) return false;
        var hb = d["heartbeat_at"];
        return Str(d, "owner") == owner || hb.IsBsonNull || hb.ToUniversalTime() < now - staleAfter;
    }

    /// <summary>Claim with optimistic concurrency on the job's version; null when not claimable.</summary>
    private async Task<JobRecord?> ClaimDocAsync(BsonDocument d, string owner, TimeSpan staleAfter, CancellationToken ct)
    {
        var now = NowUtc();
        if (!Claimable(d, owner, now, staleAfter)) return null;
        var sameOwner = d["state"].AsString == nameof(JobState.Running) && Str(d, "owner") == owner;
        var updated = await _jobs.FindOneAndUpdateAsync(
            new BsonDocument { { "_id", d["_id"] }, { "version", d["version"] } },
            new BsonDocument
            {
                { "$set", new BsonDocument { { "state", nameof(JobState.Running) }, { "owner", owner }, { "heartbeat_at", now }, { "updated_at", now } } },
                { "$inc", new BsonDocument { { "version", 1L }, { "attempts", sameOwner ? 0 : 1 } } },
            },
            new FindOneAndUpdateOptions<BsonDocument> { ReturnDocument = ReturnDocument.After }, ct);
        if (updated is null) return null;
        await _runs.UpdateOneAsync(new BsonDocument("_id", updated["run_id"]), new BsonDocument("$set", new BsonDocument("last_progress_at", now)), cancellationToken: ct);
        return ReadJob(updated);
    }

    public Task<JobRecord?> TryClaimJobAsync(string jobId, string owner, TimeSpan staleAfter, CancellationToken ct = default) => R(async token =>
    {
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var d = await _jobs.Find(new BsonDocument("_id", jobId)).FirstOrDefaultAsync(token);
            if (d is null || !Claimable(d, owner, NowUtc(), staleAfter)) return null;
            if (await ClaimDocAsync(d, owner, staleAfter, token) is { } job) return job;
        }
        return null;
    }, ct);

    public Task<JobRecord?> ClaimNextJobAsync(string owner, TimeSpan staleAfter, IReadOnlyCollection<JobKind>? kinds = null, CancellationToken ct = default) => R(async token =>
    {
        var f = new BsonDocument("state", new BsonDocument("$in", new BsonArray { nameof(JobState.Queued), nameof(JobState.Running) }));
        if (kinds is not null) f["kind"] = new BsonDocument("$in", new BsonArray(kinds.Select(k => k.ToString())));
        var docs = await _jobs.Find(f).Sort(new BsonDocument { { "created_at", 1 }, { "_id", 1 } }).ToListAsync(token);
        foreach (var d in docs)
            if (await ClaimDocAsync(d, owner, staleAfter, token) is { } job) return job;
        return null;
    }, ct);

    public Task<bool> HeartbeatJobAsync(string jobId, string owner, long step, string? stateDir = null, CancellationToken ct = default) => R(async token =>
    {
        var now = NowUtc();
        var set = new BsonDocument { { "heartbeat_at", now }, { "updated_at", now }, { "step", step } };
        if (stateDir is not null) set["state_dir"] = stateDir;
        var res = await _jobs.FindOneAndUpdateAsync(
            new BsonDocument { { "_id", jobId }, { "owner", owner }, { "state", nameof(JobState.Running) } },
            new BsonDocument { { "$set", set }, { "$inc", new BsonDocument("version", 1L) } }, cancellationToken: token);
        if (res is null) return false;
        await _runs.UpdateOneAsync(new BsonDocument("_id", res["run_id"]), new BsonDocument("$set", new BsonDocument("last_progress_at", now)), cancellationToken: token);
        return true;
    }, ct);

    public Task<bool> CompleteJobAsync(string jobId, string owner, string? outputCheckpointId = null, CancellationToken ct = default) => R(async token =>
    {
        var now = NowUtc();
        var set = new BsonDocument { { "state", nameof(JobState.Completed) }, { "updated_at", now }, { "heartbeat_at", now }, { "error", BsonNull.Value } };
        if (outputCheckpointId is not null) set["output_checkpoint_id"] = outputCheckpointId;
        var res = await _jobs.UpdateOneAsync(new BsonDocument { { "_id", jobId }, { "owner", owner }, { "state", nameof(JobState.Running) } },
            new BsonDocument { { "$set", set }, { "$inc", new BsonDocument("version", 1L) } }, cancellationToken: token);
        if (res.ModifiedCount == 1) return true;
        var d = await _jobs.Find(new BsonDocument("_id", jobId)).FirstOrDefaultAsync(token);
        return d is not null && d["state"].AsString == nameof(JobState.Completed);
    }, ct);

    public Task<bool> FailJobAsync(string jobId, string owner, string error, CancellationToken ct = default) => R(async token =>
    {
        var res = await _jobs.UpdateOneAsync(new BsonDocument { { "_id", jobId }, { "owner", owner }, { "state", nameof(JobState.Running) } },
            new BsonDocument
            {
                { "$set", new BsonDocument { { "state", nameof(JobState.Failed) }, { "updated_at", NowUtc() }, { "error", error } } },
                { "$inc", new BsonDocument("version", 1L) },
            }, cancellationToken: token);
        return res.ModifiedCount == 1;
    }, ct);
}
