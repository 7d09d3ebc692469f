namespace SparseDecode.Model;

public enum RopeType
{
    Default,
    Linear,
    Llama3,
}

/// <summary>RoPE frequency parameters as Hugging Face defines them (rope_scaling / rope_parameters).</summary>
public sealed record RopeScaling(
    RopeType Type,
    double Theta,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositions = 8192)
{
    /// <summary>inv_freq[i] = 1 / theta^(2i/d), then rescaled as the type prescribes.</summary>
    public double[] InverseFrequencies(int headDim)
    {
        int half = headDim / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++)
        {
            // Computed as transformers does (float32 base^(2i/d)) so positions far out agree to the last bit we can.
            float f = 1.0f / MathF.Pow((float)Theta, (float)(2 * i) / headDim);
            inv[i] = f;
        }
        switch (Type)
        {
            case RopeType.Linear:
                for (int i = 0; i < half; i++) inv[i] = (float)(inv[i] / Factor);
                break;
            case RopeType.Llama3:
                double lowWavelen = OriginalMaxPositions / LowFreqFactor;
                double highWavelen = OriginalMaxPositions / HighFreqFactor;
                for (int i = 0; i < half; i++)
                {
                    double wavelen = 2 * Math.PI / inv[i];
                    double scaled = wavelen > lowWavelen ? inv[i] / Factor : inv[i];
                    double smooth = (OriginalMaxPositions / wavelen - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
                    bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
                    if (medium) scaled = (1 - smooth) * scaled / Factor + smooth * scaled;
                    inv[i] = (float)scaled;
                }
                break;
        }
        return inv;
    }
}
