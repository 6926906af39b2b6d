namespace Srlm.Cli.Pipeline;

/// <summary>What `srlm start` / `srlm run` stored for a new run.</summary>
public sealed record UploadedRun(string RunId, RunSpec StoredSpec, string StartCheckpointId);

/// <summary>Uploads a spec's files into the stores and creates the run: seed files, prompt pool and
/// held-out files become blobs (validated first, errors name file and line), the judge template file is
/// inlined, the starting checkpoint goes into the checkpoint store with its metadata; the stored spec
/// names them by reference (blob:SHA, checkpoint:ID), so no service reads a path on this machine.</summary>
public static class RunUpload
{
    public static string NewRunId(string name)
    {
        var safe = new string(name.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray()).Trim('-');
        if (safe.Length == 0) safe = "run";
        if (safe.Length > 24) safe = safe[..24];
        return $"{safe}-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..4]}";
    }

    public static async Task<UploadedRun> UploadAsync(IArtifactStore store, ICheckpointStore checkpoints, RunSpec spec, string specDir, string runId, CancellationToken ct)
    {
        string Resolve(string path) => Path.GetFullPath(Path.IsPathRooted(path) ? path : Path.Combine(specDir, path));

        // The shipped hosts (srlm run and the generator service) grade with the task families' checkers or the judge's win
        // rate; an evaluator none of them has would only fail at the first evaluation, after SFT.
        if (spec.Evaluation?.Evaluator is { } evaluator && evaluator != EvaluationSpec.JudgeWinRate && Srlm.Tasks.TaskFamilies.Find(evaluator) is null)
            throw new UsageException($"spec.evaluation.evaluator: '{evaluator}' is not an evaluator srlm has (one of: {string.Join(", ", Srlm.Tasks.TaskFamilies.All.Select(f => f.Name).Append(EvaluationSpec.JudgeWinRate))})");

        async Task<string?> Blob(string? path, string field, Action<string>? validate = null)
        {
            if (path is null || SpecRefs.IsBlob(path)) return path;
            var full = Resolve(path);
            if (!File.Exists(full)) throw new UsageException($"spec.{field}: file not found: {full}");
            validate?.Invoke(full);
            try
            {
                var info = await store.PutBlobAsync(await File.ReadAllBytesAsync(full, ct), Path.GetFileName(full), "application/jsonl", ct);
                return SpecRefs.Blob(info.Sha256);
            }
            catch (InvalidDataException e) { throw new UsageException($"spec.{field}: {full}: {e.Message}"); } // e.g. over the MongoDB store's blob size
        }

        // Every file is read by the one seed reader the services use, so a run starts only with files they accept.
        void Check<T>(Func<string, SeedFile<T>> read, string full)
        {
            try { read(full).OrThrow(); }
            catch (SeedDataException e) { throw new UsageException(e.Message); }
        }

        int maxScore = spec.Judge.MaxScore;
        var ift = await Blob(spec.SeedData.Ift, "seed_data.ift", f => Check(SeedReader.ReadIft, f));
        var eft = await Blob(spec.SeedData.Eft, "seed_data.eft", f => Check(p => SeedReader.ReadEft(p, maxScore), f));
        var pool = await Blob(spec.Prompts.PoolFile, "prompts.pool_file", f => Check(SeedReader.ReadPrompts, f));
        var heldOut = spec.Evaluation is null ? null : await Blob(spec.Evaluation.HeldOut, "evaluation.held_out", f => Check(SeedReader.ReadPrompts, f));
        var judgePairs = spec.Evaluation is null ? null : await Blob(spec.Evaluation.JudgePairs, "evaluation.judge_pairs", f => Check(p => SeedReader.ReadJudgePairs(p, maxScore), f));

        var template = spec.Judge.Template;
        if (spec.Judge.TemplateFile is { } tf)
        {
            var full = Resolve(tf);
            if (!File.Exists(full)) throw new UsageException($"spec.judge.template_file: file not found: {full}");
            template = await File.ReadAllTextAsync(full, Encoding.UTF8, ct);
            if (JudgePrompt.Problem(template) is { } problem) throw new UsageException($"spec.judge.template_file: {full} {problem}");
        }

        bool isM1 = spec.Models.M1 is not null;
        var startId = Ids.StartCheckpoint(runId, isM1);
        string startRef;
        if (spec.Models.Init is not null)
        {
            var scratch = Path.Combine(Path.GetTempPath(), $"srlm-m0-{Guid.NewGuid():N}");
            try
            {
                ScratchModel.Create(spec, Resolve, scratch);
                startRef = await Checkpoint(store, checkpoints, runId, startId, 0, scratch, null, Resolve, register: true, ct, origin: "init",
                    inspect: dir => ContextFit.Check(spec, template, dir, "models.init", Resolve));
            }
            finally { if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true); }
        }
        else
            startRef = await Checkpoint(store, checkpoints, runId, startId, isM1 ? 1 : 0, spec.Models.M1 ?? spec.Models.Base!, spec.Models.Tokenizer, Resolve, register: true, ct,
                chatTemplate: spec.Models.ChatTemplate,
                inspect: dir => ContextFit.Check(spec, template, dir, isM1 ? "models.m1" : "models.base", Resolve),
                // A given M1 stands for the SFT of the seed data (spec.models.m1): its lineage names the run's seed files.
                datasetId: isM1 ? Ids.SftDataset(runId) : null);
        // An endpoint stays as it is (nothing to upload; its key stays in the calling service's environment).
        ModelRef? promptModel = spec.Models.PromptModel is { IsEndpoint: false, Folder: { } pm }
            ? await Checkpoint(store, checkpoints, runId, $"{runId}/prompt-model", -1, pm, spec.Models.Tokenizer, Resolve, register: false, ct,
                chatTemplate: spec.Models.ChatTemplate,
                field: "spec.models.prompt_model",
                inspect: dir => ContextFit.CheckPromptModel(spec, dir, "models.prompt_model", Resolve))
            : spec.Models.PromptModel;

        ModelRef? judgeModel = spec.Evaluation?.JudgeModel is { IsEndpoint: false, Folder: { } jm }
            ? await Checkpoint(store, checkpoints, runId, $"{runId}/eval-judge", -1, jm, null, Resolve, register: false, ct,
                field: "spec.evaluation.judge_model",
                inspect: dir => ContextFit.CheckEvaluationJudge(spec, template, dir, "evaluation.judge_model", Resolve))
            : spec.Evaluation?.JudgeModel;

        // evaluation.baseline: "parent" and "m1" name checkpoints of the run; anything else is a folder, uploaded like the judge.
        string? baseline = spec.Evaluation?.Baseline is { } bl && bl is not (EvaluationSpec.BaselineParent or EvaluationSpec.BaselineM1)
            ? await Checkpoint(store, checkpoints, runId, $"{runId}/eval-baseline", -1, bl, null, Resolve, register: false, ct,
                field: "spec.evaluation.baseline")
            : spec.Evaluation?.Baseline;

        var stored = spec with
        {
            Models = spec.Models with { Base = isM1 ? null : startRef, M1 = isM1 ? startRef : null, Init = null, Tokenizer = null, PromptModel = promptModel, ChatTemplate = null },
            SeedData = new SeedDataSpec { Ift = ift, Eft = eft },
            Prompts = spec.Prompts with { PoolFile = pool },
            Judge = spec.Judge with { Template = template, TemplateFile = null },
            Evaluation = spec.Evaluation is null ? null : spec.Evaluation with { HeldOut = heldOut, JudgePairs = judgePairs, JudgeModel = judgeModel, Baseline = baseline! },
        };
        RunSpecValidator.ThrowIfInvalid(stored);

        var shas = new[] { ift, eft }.Where(SpecRefs.IsBlob).Select(r => SpecRefs.BlobSha(r, "seed_data")).ToList();
        await store.PutAsync(new DatasetRecord { Id = Ids.SftDataset(runId), RunId = runId, Iteration = 0, Purpose = "sft", BlobSha256s = shas, Description = "IFT + EFT seed files" }, ct);
        var outcome = await store.CreateRunAsync(runId, RunSpecJson.Serialize(stored), stored.SchemaVersion, ct);
        if (outcome == WriteOutcome.Conflict) throw new UsageException($"run {runId} already exists with a different spec");
        return new UploadedRun(runId, stored, startId);
    }

    private static async Task<string> Checkpoint(IArtifactStore store, ICheckpointStore checkpoints, string runId, string id, int modelIndex,
        string path, string? tokenizer, Func<string, string> resolve, bool register, CancellationToken ct, string origin = "upload", string? datasetId = null,
        string field = "spec.models", string? chatTemplate = null, Action<string>? inspect = null)
    {
        if (SpecRefs.IsCheckpoint(path))
        {
            if (chatTemplate is not null) throw new UsageException("spec.models.chat_template: cannot be applied to a checkpoint already in the store; give a folder");
            return path;
        }
        var dir = resolve(path);
        if (!Directory.Exists(dir)) throw new UsageException($"{field}: checkpoint folder not found: {dir}");
        if (!File.Exists(Path.Combine(dir, "config.json"))) throw new UsageException($"{field}: {dir} has no config.json (expected a Hugging Face-style checkpoint folder)");
        string source = dir;
        string? temp = null;
        string? templateText = null;
        if (chatTemplate is not null)
        {
            var file = resolve(chatTemplate);
            if (!File.Exists(file)) throw new UsageException($"spec.models.chat_template: file not found: {file}");
            templateText = File.ReadAllText(file);
            try { ChatTemplate.Parse(templateText, file); }
            catch (ChatTemplateException e) { throw new UsageException($"spec.models.chat_template: {e.Message}"); }
        }
        if (tokenizer is not null || templateText is not null)
        {
            temp = Path.Combine(Path.GetTempPath(), $"srlm-upload-{Guid.NewGuid():N}");
            Directory.CreateDirectory(temp);
            foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(temp, Path.GetFileName(f)));
            source = temp;
        }
        try
        {
        if (tokenizer is not null)
        {
            // A separate tokenizer is merged into the uploaded folder, so the stored checkpoint is complete.
            var tok = resolve(tokenizer);
            if (File.Exists(tok)) File.Copy(tok, Path.Combine(temp!, Path.GetFileName(tok)), overwrite: true);
            else if (Directory.Exists(tok)) foreach (var f in Directory.GetFiles(tok)) File.Copy(f, Path.Combine(temp!, Path.GetFileName(f)), overwrite: true);
            else throw new UsageException($"spec.models.tokenizer: not found: {tok}");
        }
        // The spec's template replaces the folder's: written as chat_template.jinja, which is read first.
        if (templateText is not null) File.WriteAllText(Path.Combine(temp!, ChatFormat.TemplateFile), templateText);
            // A template the interpreter cannot render exactly is refused now, not when a worker loads the model.
            try { ChatFormat.Load(source); }
            catch (ChatTemplateException e) { throw new UsageException($"{field}: {e.Message}"); }
            // The complete folder (its tokenizer and template merged in) as the services will load it.
            inspect?.Invoke(source);

            var put = await checkpoints.PutAsync(id, source, ct);
            if (register)
                await store.PutAsync(new CheckpointRecord
                {
                    Id = id, RunId = runId, Iteration = modelIndex, Location = put.Manifest.Location, Files = put.Manifest.Files, Origin = origin, DatasetId = datasetId,
                }, ct);
            return SpecRefs.Checkpoint(id);
        }
        finally
        {
            if (temp is not null) Directory.Delete(temp, recursive: true);
        }
    }
}
